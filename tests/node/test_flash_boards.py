"""`tinyfleet flash esp32|nano33`: with no board attached they fail with a readable
message and a non-zero exit (never a traceback); the staged files and printed steps
are what a real board needs; the staged Nano sketch's C side compiles for the M4."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINYFLEET = [sys.executable, "-c", "from tinyfleet.cli import main; main()"]
NO_PORT = "/dev/ttyTINYFLEET-NOPE"


def tinyfleet(*args, cwd=None):
    return subprocess.run([*TINYFLEET, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def blob():
    from training import testmodels, tflite_to_blob
    return tflite_to_blob.convert(testmodels.get("dense_sine"), "sine", 1)


@pytest.fixture
def files(tmp_path, blob):
    cfg = {"node_id": "esp32-07", "site": "site-1", "broker": "mqtt://192.168.1.10:1883", "model": "sine",
           "hmac_key": "00" * 32, "wifi_ssid": "lab", "wifi_password": "pw", "user": "esp32-07",
           "password": "secret"}
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    (tmp_path / "model.tfmb").write_bytes(blob)
    (tmp_path / "micropython.bin").write_bytes(b"\xe9" + bytes(4095))  # esptool never gets to read it
    return tmp_path


def esp32_args(d, *extra):
    return ("flash", "esp32", "--port", NO_PORT, "--firmware", d / "micropython.bin", "--config", d / "node.json",
            "--model", d / "model.tfmb", *extra)


@pytest.mark.parametrize("erase", [False, True])
def test_esp32_without_a_board_fails_clearly(files, erase):
    r = tinyfleet(*esp32_args(files, *(["--erase"] if erase else [])))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "tinyfleet flash esp32:" in r.stderr
    assert ("erase the flash failed" if erase else "write MicroPython micropython.bin failed") in r.stderr
    assert NO_PORT in r.stderr  # esptool's own words about the port come through


@pytest.mark.parametrize("breakage,message", [
    (lambda d: (d / "node.json").write_text('{"node_id": "x"'), "not valid JSON"),
    (lambda d: (d / "node.json").write_text('{"node_id": "x"}'), "site"),
    (lambda d: (d / "model.tfmb").write_bytes(b"TFMB" + bytes(60)), "not a valid TinyFleet blob"),
    (lambda d: (d / "micropython.bin").unlink(), "MicroPython image"),
])
def test_esp32_bad_inputs_are_refused_before_any_tool_runs(files, breakage, message):
    breakage(files)
    r = tinyfleet(*esp32_args(files))
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_esp32_print_shows_the_steps_and_stages_the_device_tree(files, blob, tmp_path):
    from node_firmware import flash
    lines = []
    stage = tmp_path / "stage"
    flash.flash_esp32("/dev/ttyUSB0", files / "micropython.bin", files / "node.json", files / "model.tfmb",
                      erase=True, print_only=True, stage=stage, echo=lines.append)
    text = "\n".join(lines)
    assert "-m esptool --chip esp32 --port /dev/ttyUSB0 erase-flash" in text
    assert "write-flash -z 0x1000 %s" % (files / "micropython.bin") in text
    assert "-m mpremote connect /dev/ttyUSB0 exec" in text and "fs cp -r" in text
    for rel in ("boot.py", "main.py", "lib/tinyfleet_node/app.py", "lib/contract/protocol.py",
                "lib/contract/blob.py", "lib/features.py", "lib/tfmicro.py"):
        assert (stage / rel).is_file(), rel
    assert (stage / "models" / "slot_a.tfmb").read_bytes() == blob
    assert json.loads((stage / "config.json").read_text())["node_id"] == "esp32-07"


def nano_config(d):
    (d / "nano.json").write_text(json.dumps({"node_id": "nano-7", "hmac_key": "11" * 32, "node_key": "22" * 16,
                                             "sensor": "sine", "task": "regression"}))
    return d / "nano.json"


def test_nano33_print_lists_the_arduino_cli_steps(files):
    r = tinyfleet("flash", "nano33", "--port", "/dev/ttyACM0", "--print", "--config", nano_config(files),
                  "--model", files / "model.tfmb")
    assert r.returncode == 0, r.stderr
    assert "arduino-cli core install arduino:mbed_nano" in r.stdout
    assert "arduino-cli compile --fqbn arduino:mbed_nano:nano33ble" in r.stdout
    assert "arduino-cli upload -p /dev/ttyACM0 --fqbn arduino:mbed_nano:nano33ble" in r.stdout
    r2 = tinyfleet("flash", "nano33", "--print", "--rev2", "--fqbn", "arduino:mbed_nano:nano33ble")
    assert r2.returncode == 0 and "Arduino_BMI270_BMM150" in r2.stdout and "upload" not in r2.stdout


def test_nano33_without_a_board_fails_clearly(files):
    r = tinyfleet("flash", "nano33", "--port", NO_PORT, "--config", nano_config(files),
                  "--model", files / "model.tfmb")
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert "tinyfleet flash nano33:" in r.stderr
    if shutil.which("arduino-cli") is None:
        assert "arduino-cli is not installed" in r.stderr


def test_nano33_bad_config_is_refused(files):
    (files / "bad.json").write_text(json.dumps({"node_id": "n", "hmac_key": "zz"}))
    r = tinyfleet("flash", "nano33", "--port", NO_PORT, "--config", files / "bad.json")
    assert r.returncode == 1 and "hmac_key must be hex" in r.stderr


@pytest.mark.parametrize("classic", [False, True])
def test_staged_nano33_sketch_c_sources_compile_for_the_m4(files, tmp_path, classic):
    """What arduino-cli would compile as C: core, runtime, generated blob and config."""
    from node_firmware import flash
    from training import export, testmodels
    tflm = None
    if classic:
        tflm = tmp_path / "export"
        tflm.mkdir()
        header, source = export.c_array(testmodels.get("dense_sine"), "sine")
        (tflm / "sine_model_data.h").write_text(header)
        (tflm / "sine_model_data.cc").write_text(source)   # the name `tinyfleet export --format c` writes
    sketch = flash.stage_nano33(tmp_path / "build", nano_config(files), files / "model.tfmb", tflm)
    (sketch / "check_config.c").write_text('#include "tfn_build_config.h"\n#include "tfn_node.h"\n'
                                           'int check(void) { return TFN_FEATURES + TFN_TASK; }\n')
    for src in sorted(sketch.glob("*.c")):
        r = subprocess.run(["arm-none-eabi-gcc", "-std=gnu11", "-Wall", "-Werror", "-mcpu=cortex-m4", "-mthumb",
                            "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-I", str(sketch), "-c", str(src),
                            "-o", str(tmp_path / (src.stem + ".o"))], capture_output=True, text=True)
        assert r.returncode == 0, src.name + r.stderr
    cfg = (sketch / "tfn_build_config.h").read_text()
    assert '#define TFN_NODE_ID "nano-7"' in cfg and ("TFN_USE_TFLM" in cfg) == classic


def test_nano33_refuses_the_weather_model_it_cannot_feed(files, tmp_path):
    from node_firmware import flash
    cfg = json.loads(nano_config(files).read_text())
    cfg["sensor"] = "weather"
    bad = tmp_path / "weather.json"
    bad.write_text(json.dumps(cfg))
    with pytest.raises(flash.FlashError, match="hour of day"):
        flash.stage_nano33(tmp_path / "build", bad, files / "model.tfmb", None)
