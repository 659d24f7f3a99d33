"""The Arduino sketch itself (tinyfleet_nano33.ino), staged exactly as `tinyfleet flash
nano33` stages it, compiled with arm-none-eabi-g++ against node_firmware/nano33/shim
(declarations with the real Arduino core's and libraries' signatures; NOT the core),
linked with the shim's emulator and run on qemu mps2-an386 (Cortex-M4F). The emulator
models the sensors over I2C with bus timing, the USB serial port and the nRF52840 flash;
the frames the sketch writes are decoded with contract.protocol. What a real board does
beyond that model is untested (node_firmware/nano33/shim/README.md)."""
import math
import subprocess

import numpy as np
import pytest

from contract import protocol as P
from node_firmware.micropython import features as F

import nano33_harness as H

# Bin-centred tones (k * 1000/256 Hz): the window holds whole periods, so the features do
# not depend on where in time the window starts. Band 2 on x (bin 38, next to band 3),
# bands 1 and 4 on y, band 2 on z, gravity on z.
TONES = [(0, 148.4375, 0.3, 0.1), (1, 39.0625, 0.2, 0.5), (1, 292.96875, 0.1, 0.0), (2, 70.3125, 0.25, 1.0)]
OFFSETS = (0.0, 0.0, 1.0)
SIGNAL = "".join("tone %d %r %r %r\n" % t for t in TONES) + "".join(
    "offset %d %r\n" % (a, g) for a, g in enumerate(OFFSETS))
VARIANTS = {"rev1": {}, "rev2": {"rev2": True}, "tflm": {"tflm": True},
            "mic": {"extra": ("-DTFN_RAW_MIC=1",), "sensor": "sine", "task": "regression"}}


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = H.build_sketch(tmp_path_factory.mktemp(name), **VARIANTS[name])
        return cache[name]
    return get


def run(elf_path, tmp_path, cfg, variant="rev1", **kw):
    files = dict(kw.pop("files", {}))
    if variant == "tflm":
        files["tflm_model.blob"] = (H.ANOMALY / "model.tfmb").read_bytes()
    out = H.run_sketch(elf_path, tmp_path / "run", cfg, files=files, **kw)
    assert out["bad"] == [], out["bad"][:3]  # every line the sketch wrote is a valid TF1 frame
    out["msgs"] = [(k, p if k == P.OTA_CHUNK else P.decode(k, p)) for k, p in out["frames"]]
    return out


def of(out, kind):
    return [m for k, m in out["msgs"] if k == kind]


def definition(t):
    w = np.tile(np.asarray(OFFSETS, dtype=float)[:, None], (1, len(t)))
    for a, f, g, ph in TONES:
        w[a] += g * np.sin(2 * np.pi * f * t + ph)
    return np.array(F.vibration_features(*[list(map(float, a)) for a in w]))


# ------------------------------------------------------------------ compile checks


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sketch_compiles_at_the_board_cores_own_flags(variant, tmp_path):
    """-std=gnu++14 -mfloat-abi=softfp -fno-rtti -fno-exceptions -funsigned-char, -Werror."""
    assert H.sketch_compile_only(tmp_path, **VARIANTS[variant]) == []


def test_weather_is_refused_at_compile_time(tmp_path):
    """`flash` refuses sensor "weather" up front (test_flash_boards); a config edited by hand
    past it still stops at the sketch's static_assert: the hour of day would be the uptime."""
    def to_weather(text):
        assert "TFN_FEAT_VIBRATION" in text
        return text.replace("TFN_FEAT_VIBRATION", "TFN_FEAT_WEATHER")
    assert H.sketch_compile_only(tmp_path) == []
    diag = H.sketch_compile_only(tmp_path, edit=to_weather)
    assert diag and "has no clock" in diag[0]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_linked_image_has_no_heap_and_fits_the_emulated_flash(variant, elf):
    path = elf(variant)
    syms = subprocess.run(["arm-none-eabi-nm", str(path)], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in syms.splitlines() if line.strip()}
    assert not names & {"malloc", "free", "_sbrk", "_malloc_r"}
    size = subprocess.run(["arm-none-eabi-size", str(path)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in size.splitlines()[1].split()[:3])
    print(variant, "text", text, "data", data, "bss (emulator buffers included)", bss)
    assert text + data < 0x80000  # below the emulated user flash (the run checks it too)


# ------------------------------------------------------------------ runs


@pytest.mark.parametrize("variant", ["rev1", "rev2", "tflm"])
def test_vibration_telemetry_carries_the_1khz_features(variant, elf, tmp_path):
    """Sensor at its native rate (952 / 800 Hz) -> resampled -> features: the 1 kHz
    definition within 0.01; the same tones taken at the sensor rate as if 1 kHz are far off."""
    out = run(elf(variant), tmp_path, "run_ms 6000\n" + SIGNAL, variant)
    tel = [m["items"][0] for m in of(out, P.TELEMETRY)]
    assert len(tel) >= 4
    hb = of(out, P.HEARTBEAT)
    assert hb and hb[-1]["infer_errors"] == 0 and hb[-1]["board"] == "nano33ble"
    assert out["report"]["i2c_hz_max"] == 400000 and out["report"]["flash_bad_ops"] == 0
    want = definition(np.arange(256) / 1000.0)
    got = np.array([item["features"] for item in tel])
    assert np.abs(got - want).max() < 0.01
    rate = 800.0 if variant == "rev2" else 952.0
    naive = definition(np.arange(256) / rate)
    assert np.abs(naive - want).max() > 1.0
    for item in tel:
        assert item["model"] == ("tflm" if variant == "tflm" else "anomaly")
        assert item["result"] == (1 if item["score"] > 0.0229 else 0)


def test_the_nominal_rate_is_assumed(elf, tmp_path):
    """The documented limit: the sketch resamples from the nominal 952 Hz. A chip running
    3 % fast moves the 148.4 Hz tone (bin 38, band 2) across the band 2/3 edge (152.3 Hz)."""
    out = run(elf("rev1"), tmp_path, "run_ms 3000\nodr_ppm 30000\n" + SIGNAL)
    got = np.array([m["items"][0]["features"] for m in of(out, P.TELEMETRY)])
    want = definition(np.arange(256) / 1000.0)
    assert got[:, 6].min() > want[6] + 1.0  # x band 3 gains energy it should not have


@pytest.mark.parametrize("variant,max_hz", [("rev1", 50000), ("rev2", 100000)])
def test_a_bus_too_slow_for_the_rate_refuses_windows(variant, max_hz, elf, tmp_path):
    """When reads fall behind the sensor (FIFO overrun / a late sample), the window is
    dropped and counted in infer_errors; no telemetry with lost samples goes out."""
    out = run(elf(variant), tmp_path, "run_ms 6000\ni2c_max_hz %d\n" % max_hz + SIGNAL)
    assert of(out, P.TELEMETRY) == []
    assert of(out, P.HEARTBEAT)[-1]["infer_errors"] >= 3


def test_microphone_path_runs(elf, tmp_path):
    out = run(elf("mic"), tmp_path, "run_ms 3000\npdm_tone 440 0.25\n")
    assert out["report"]["pdm_callbacks"] > 100
    assert len(of(out, P.TELEMETRY)) >= 2


def test_timestamps_are_the_uptime_and_survive_the_millis_wrap(elf, tmp_path):
    """No RTC: ts is ms since boot, 64-bit. The emulator starts millis() 3 s before its
    32-bit wrap (a board gets there after 49.7 days); ts must run on past 2^32."""
    start = 2 ** 32 - 3000
    out = run(elf("rev1"), tmp_path, "run_ms 7000\nmillis_offset %d\n" % start + SIGNAL)
    ts = [m["ts"] if "ts" in m else m["items"][0]["ts"] for k, m in out["msgs"] if k in
          (P.STATUS, P.HEARTBEAT, P.TELEMETRY)]
    assert len(ts) >= 7 and ts == sorted(ts)
    assert start + 500 <= ts[0] < start + 600  # the first frame once the USB host is there
    assert ts[-1] > 2 ** 32 + 3000 and all(t < 10 ** 12 for t in ts)  # never mistaken for epoch ms
    hb = of(out, P.HEARTBEAT)
    assert hb[-1]["uptime"] == (hb[-1]["ts"] - start) // 1000


def test_frames_wait_for_the_usb_host(elf, tmp_path):
    """The sketch waits up to 3 s for the port; frames before the host opens it are dropped
    whole (USBSerial::write returns 0), the first frame after it is complete."""
    out = run(elf("rev1"), tmp_path, "run_ms 8000\nusb_connect_ms 5000\n" + SIGNAL)
    assert out["report"]["serial_dropped"] > 0
    assert out["msgs"] and all(m.get("ts", 5000) >= 5000 for _, m in out["msgs"] if isinstance(m, dict))


def _ota_stream(golden_fix=None):
    from training import export
    from contract import blob as B
    tflite = (H.ANOMALY / "int8.tflite").read_bytes()
    meta = B.parse((H.ANOMALY / "model.tfmb").read_bytes())["meta"]
    v2 = export.make_blob(tflite, "anomaly", 2, meta)
    gold = H.golden(tflite)
    if golden_fix:
        gold = golden_fix(gold)
    m = P.build_manifest(H.FLEET_KEY, "fleet", "d-sketch", "anomaly", 2, v2, 256, gold)
    lines = [P.encode_serial_frame(P.OTA_OFFER, P.encode(P.OTA_OFFER, m))]
    for i in range(P.chunk_count(len(v2), 256)):
        frame = P.encode_chunk(m["sha256"], i, v2[i * 256:(i + 1) * 256])
        if i == 2:
            lines.append(P.encode_serial_frame(P.OTA_CHUNK, frame[:-1] + bytes([frame[-1] ^ 1])))
        lines.append(P.encode_serial_frame(P.OTA_CHUNK, frame))
    return b"".join(lines)


def test_ota_into_the_sketchs_flash_slots_then_a_power_cycle(elf, tmp_path):
    """The offer and every chunk (chunk 2 first corrupted) over the serial input: the sketch's
    FlashIAP storage (emulated nRF52840 flash: 4 KiB sector erase, 4-byte pages, programming
    only clears bits) takes the model; after a power cycle with the same flash the node runs
    version 2 and its telemetry seq carries on."""
    first = run(elf("rev1"), tmp_path, "run_ms 6000\n" + SIGNAL, serial_in=_ota_stream())
    states = [m["state"] for m in of(first, P.OTA_STATE)]
    assert states == ["QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    reqs = [m["index"] for m in of(first, P.OTA_REQUEST)]
    assert reqs[0] == 0 and reqs.count(2) == 1 and reqs[1] == 2  # the bad chunk, asked for again
    rep = first["report"]
    assert rep["flash_erases"] > 0 and rep["flash_bad_ops"] == 0 and rep["flash_dirty_bits"] == 0
    assert rep["serial_in_left"] == 0
    tel = [m["items"][0] for m in of(first, P.TELEMETRY)]
    assert tel[0]["model_version"] == 1 and tel[-1]["model_version"] == 2
    second = run(elf("rev1"), tmp_path, "run_ms 3000\n" + SIGNAL,
                 files={"flash_in.bin": first["files"]["flash_out.bin"]})
    assert of(second, P.HEARTBEAT)[0]["models"] == {"anomaly": 2}
    tel2 = [m["items"][0] for m in of(second, P.TELEMETRY)]
    assert tel2 and tel2[0]["model_version"] == 2 and tel2[0]["seq"] > tel[-1]["seq"]
    assert of(second, P.OTA_STATE) == []


def test_ota_self_test_failure_rolls_back_in_the_sketch(elf, tmp_path):
    out = run(elf("rev1"), tmp_path, "run_ms 5000\n" + SIGNAL,
              serial_in=_ota_stream(lambda g: [(i, bytes([o[0] ^ 0x80]) + o[1:]) for i, o in g]))
    assert of(out, P.OTA_STATE)[-1]["state"] == "ROLLED_BACK"
    assert {m["items"][0]["model_version"] for m in of(out, P.TELEMETRY)} == {1}
    assert out["report"]["flash_bad_ops"] == 0 and out["report"]["flash_dirty_bits"] == 0


def test_tflm_path_refuses_ota_and_leaves_the_flash_alone(elf, tmp_path):
    out = run(elf("tflm"), tmp_path, "run_ms 4000\n" + SIGNAL, "tflm", serial_in=_ota_stream())
    last = of(out, P.OTA_STATE)[-1]
    assert (last["state"], last.get("reason")) == ("FAILED", "bad_hmac")  # no keys on this path
    assert out["report"]["flash_erases"] == 0
    assert math.isfinite(of(out, P.TELEMETRY)[0]["items"][0]["score"])
