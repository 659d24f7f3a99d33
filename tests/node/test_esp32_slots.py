"""Boot-time slot logic on its own (no broker): validate the active blob, fall
back to the other slot, recover without a pointer, abandon a model that keeps
rebooting the node during its trial."""
import json

import pytest


@pytest.fixture
def flash(tmp_path, blobs):
    from node_firmware.sim.fs import SimStorage
    from tinyfleet_node.slots import Slots
    fs = SimStorage(tmp_path)
    fs.makedirs("/models")
    fs.write_file("/models/a.tfmb", blobs["sine"][1])
    fs.write_file("/models/b.tfmb", blobs["sine"][2])
    return fs, lambda: Slots(fs, ["/models/a.tfmb", "/models/b.tfmb"], "/models/active.json")


def test_no_pointer_picks_the_newest_valid_blob(flash):
    fs, slots = flash
    _, hdr, event = slots().boot("sine")
    assert hdr["model_version"] == 2 and event is None
    assert fs.read_json("/models/active.json")["slot"] == 1


def test_corrupt_active_blob_falls_back(flash, blobs):
    fs, slots = flash
    s = slots()
    s.boot("sine")
    bad = bytearray(blobs["sine"][2])
    bad[len(bad) // 2] ^= 0xFF
    fs.write_file("/models/b.tfmb", bytes(bad))
    s = slots()
    _, hdr, event = s.boot("sine")
    assert event == "fallback" and hdr["model_version"] == 1 and s.active() == 0


def test_torn_pointer_uses_the_tmp_or_rescans(flash):
    fs, slots = flash
    slots().boot("sine")
    fs.write_file("/models/active.json", b'{"slot": 0, "vers')  # torn
    _, hdr, _ = slots().boot("sine")
    assert hdr["model_version"] == 2


def test_wrong_model_name_is_not_valid(flash):
    from tinyfleet_node.slots import NoValidModel
    _, slots = flash
    with pytest.raises(NoValidModel, match="weather"):
        slots().boot("weather")


def _on_trial(fs, slots):
    """Slot 0 holds sine v1; v2 in slot 1 has just been switched to, on trial."""
    fs.write_json("/models/active.json", {"slot": 0, "version": 1, "prev": None, "prev_version": None,
                                          "trial": False, "boots": 0, "deployment": None})
    s = slots()
    s.boot("sine")
    s.activate(1, 2, "d-1")


def test_trial_model_that_keeps_rebooting_is_abandoned(flash):
    from tinyfleet_node.slots import MAX_TRIAL_BOOTS
    fs, slots = flash
    _on_trial(fs, slots)
    events = []
    for _ in range(MAX_TRIAL_BOOTS + 1):
        _, hdr, event = slots().boot("sine")
        events.append((hdr["model_version"], event))
    assert events[:-1] == [(2, None)] * MAX_TRIAL_BOOTS
    assert events[-1] == (1, "trial_abandoned")
    assert json.loads(fs.read("/models/active.json"))["trial"] is False


def test_power_losses_during_a_trial_do_not_count_against_it(flash):
    """A power cut is not the new model's fault: however many there are, the model stays
    on trial; crash reboots are still counted, and abandon it after MAX_TRIAL_BOOTS."""
    from tinyfleet_node.slots import MAX_TRIAL_BOOTS
    fs, slots = flash
    _on_trial(fs, slots)
    events = []
    for _ in range(MAX_TRIAL_BOOTS + 1):
        for _ in range(3):
            events.append(slots().boot("sine", power_lost=True)[2])
        events.append(slots().boot("sine")[2])
    assert events[:-1] == [None] * (4 * MAX_TRIAL_BOOTS + 3)
    assert events[-1] == "trial_abandoned"
