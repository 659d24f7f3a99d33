"""Flashing real boards. ESP32: esptool writes the MicroPython image the user
supplies, then mpremote copies the node app, the contract package, the config
and the model blob. Nano 33 BLE Sense: the sketch, the C core and the C runtime
are staged into one Arduino sketch folder, then arduino-cli compiles and uploads.

Every input is checked before a tool runs; a tool that fails (no board on the
port, no arduino-cli) becomes a FlashError naming the step and the tool's own
message, never a traceback.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESP32_APP = ROOT / "node_firmware" / "esp32"
MICROPYTHON = ROOT / "node_firmware" / "micropython"
CONTRACT = ROOT / "contract"
NANO = ROOT / "node_firmware" / "nano33"
RUNTIME = ROOT / "node_firmware" / "c"
SKETCH = "tinyfleet_nano33"
DEFAULT_FQBN = "arduino:mbed_nano:nano33ble"
# MicroPython images start at 0x1000 on the original ESP32, at 0 on the newer chips.
FIRMWARE_OFFSET = {"esp32": "0x1000"}
NANO_LIBS = {False: ["Arduino_LSM9DS1", "Arduino_HTS221", "Arduino_LPS22HB"],
             True: ["Arduino_BMI270_BMM150", "Arduino_HS300x", "Arduino_LPS22HB"]}
TFLM_LIB = "Chirale_TensorFlowLite"


class FlashError(RuntimeError):
    """A flashing step that cannot go on; the message is meant for the user."""


Step = tuple[str, list[str]]  # (what it does, argv)


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FlashError("%s %s does not exist (or is not a file)" % (what, path))
    return path


def _check_blob(path: Path) -> bytes:
    from contract import blob as B
    data = _need_file(path, "model blob").read_bytes()
    try:
        B.parse(data)
    except Exception as e:  # the reader raises ValueError subclasses with the reason
        raise FlashError("model blob %s is not a valid TinyFleet blob: %s" % (path, e)) from None
    return data


def _load_json(path: Path, what: str) -> dict:
    try:
        raw = json.loads(_need_file(path, what).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FlashError("%s %s is not valid JSON: %s" % (what, path, e)) from None
    if not isinstance(raw, dict):
        raise FlashError("%s %s must hold a JSON object" % (what, path))
    return raw


def run(steps: list[Step], echo=print) -> None:
    """Runs the steps in order; the first failure stops with a FlashError."""
    for what, argv in steps:
        echo("==> %s" % what)
        echo("    %s" % " ".join(argv))
        try:
            r = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise FlashError("%s: %s is not installed or not on PATH" % (what, argv[0])) from None
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-6:])
            raise FlashError("%s failed (exit %d):\n%s" % (what, r.returncode, tail))


# ------------------------------------------------------------------ ESP32

def esp32_config(path: Path) -> tuple[dict, dict]:
    """(as written, with defaults): the node config, validated by the ESP32 app's own validator."""
    raw = _load_json(path, "node config")
    sys.path.insert(0, str(ESP32_APP / "lib"))
    try:
        from tinyfleet_node import config as cfg
        try:
            return raw, cfg.validate(dict(raw), "node config %s" % path)
        except cfg.ConfigError as e:
            raise FlashError(str(e)) from None
    finally:
        sys.path.remove(str(ESP32_APP / "lib"))


def stage_esp32(stage: Path, config: Path, model: Path) -> dict:
    """The device's file tree: /boot.py, /main.py, /lib/{tinyfleet_node,contract,
    features.py,tfmicro.py}, /config.json and the blob in the first model slot."""
    raw, cfg = esp32_config(config)
    blob = _check_blob(model)
    slot = cfg["slots"][0].lstrip("/")
    lib = stage / "lib"
    shutil.copytree(ESP32_APP / "lib" / "tinyfleet_node", lib / "tinyfleet_node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(CONTRACT, lib / "contract", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("features.py", "tfmicro.py"):
        shutil.copy2(MICROPYTHON / name, lib / name)
    for name in ("boot.py", "main.py"):
        shutil.copy2(ESP32_APP / name, stage / name)
    (stage / "config.json").write_text(json.dumps(raw))
    (stage / slot).parent.mkdir(parents=True, exist_ok=True)
    (stage / slot).write_bytes(blob)
    return cfg


def esp32_steps(port: str, firmware: Path, stage: Path, cfg: dict, erase: bool, chip: str = "esp32",
                baud: int = 460800) -> list[Step]:
    py = sys.executable
    esptool = [py, "-m", "esptool", "--chip", chip, "--port", port]
    steps: list[Step] = []
    if erase:
        steps.append(("erase the flash", esptool + ["erase-flash"]))
    steps.append(("write MicroPython %s" % firmware.name,
                  esptool + ["--baud", str(baud), "write-flash", "-z", FIRMWARE_OFFSET.get(chip, "0x0"),
                             str(firmware)]))
    # a re-flash without --erase must not boot an older model from a stale slot pointer
    stale = [cfg["active_pointer"], cfg["active_pointer"] + ".tmp"] + list(cfg["slots"][1:])
    forget = "import os\nfor p in %r:\n    try:\n        os.remove(p)\n    except OSError:\n        pass\n" % stale
    mp = [py, "-m", "mpremote", "connect", port]
    slot_dir = stage / cfg["slots"][0].lstrip("/").split("/")[0]
    tree = [str(stage / "lib")] + ([str(slot_dir)] if slot_dir.is_dir() else [])
    files = [str(stage / n) for n in ("boot.py", "main.py", "config.json")]
    if not slot_dir.is_dir():
        files.append(str(stage / cfg["slots"][0].lstrip("/")))
    steps.append(("copy the node app, contract, config and model",
                  mp + ["exec", forget, "+", "fs", "cp", "-r", *tree, ":", "+", "fs", "cp", *files, ":",
                        "+", "reset"]))
    return steps


def flash_esp32(port: str, firmware: Path, config: Path, model: Path, erase: bool = False,
                chip: str = "esp32", baud: int = 460800, print_only: bool = False, stage: Path | None = None,
                echo=print) -> None:
    _need_file(firmware, "MicroPython image")
    stage = stage or ROOT / "var" / "build" / "esp32" / "stage"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    cfg = stage_esp32(stage, config, model)
    steps = esp32_steps(port, firmware, stage, cfg, erase, chip, baud)
    if print_only:
        echo("# device files staged in %s" % stage)
        for what, argv in steps:
            echo("# %s\n%s" % (what, " ".join(argv)))
        return
    run(steps, echo)
    echo("ESP32 on %s flashed: node %s, model %s" % (port, cfg["node_id"], model.name))


# ------------------------------------------------------------------ Nano 33 BLE Sense

NANO_CONFIG = {  # field -> (type, default); None = required
    "node_id": (str, None), "hmac_key": (str, None), "node_key": (str, ""),
    "sensor": (str, "vibration"), "task": (str, "anomaly"), "threshold": ((int, float), 1.0),
    "sample_ms": (int, 1000), "heartbeat_ms": (int, 30000), "send_features": (bool, True),
}


def nano33_config(path: Path | None) -> dict:
    """node.json fields the sketch compiles in (the same names as the ESP32 config)."""
    raw = _load_json(path, "node config") if path else {}
    out = {}
    for name, (kind, default) in NANO_CONFIG.items():
        v = raw.get(name, default)
        if v is None:
            raise FlashError("node config needs %r" % name)
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise FlashError("node config field %r has the wrong type" % name)
        out[name] = v
    for k in ("hmac_key", "node_key"):
        try:
            bytes.fromhex(out[k])
        except ValueError:
            raise FlashError("node config %s must be hex" % k) from None
    if len(out["hmac_key"]) < 32:
        raise FlashError("node config hmac_key must be at least 16 bytes (32 hex digits)")
    if out["sensor"] not in ("vibration", "sine"):
        raise FlashError("node config sensor must be vibration or sine: the weather model needs the hour of "
                         "day, which a Nano 33 without a clock cannot know")
    if out["task"] not in ("anomaly", "classify", "regression"):
        raise FlashError("node config task must be anomaly, classify or regression")
    return out


def _c_bytes(data: bytes) -> str:
    return ",\n".join(", ".join("0x%02x" % b for b in data[i:i + 16]) for i in range(0, len(data), 16))


def stage_nano33(out: Path, config: Path | None = None, model: Path | None = None,
                 tflm: Path | None = None, rev2: bool = False) -> Path:
    """A flat Arduino sketch folder: the .ino, the core, the runtime, the factory
    blob as a C array and tfn_build_config.h. Returns the sketch folder."""
    sketch = out / SKETCH
    if sketch.exists():
        shutil.rmtree(sketch)
    sketch.mkdir(parents=True)
    shutil.copy2(NANO / SKETCH / (SKETCH + ".ino"), sketch)
    for src in sorted((NANO / "core").glob("*.[ch]")):
        shutil.copy2(src, sketch)
    for name in ("tfm_runtime.c", "tfm_runtime.h", "tfm_kernels.h"):
        if (RUNTIME / name).exists():
            shutil.copy2(RUNTIME / name, sketch)
    blob = _check_blob(model) if model else b""
    (sketch / "tfn_factory_blob.c").write_text(
        "/* Generated by tinyfleet flash nano33: the factory model blob (%d bytes). */\n"
        "#include <stdint.h>\n"
        "const uint8_t tfn_factory_blob[] __attribute__((aligned(4))) = {\n%s\n};\n"
        "const uint32_t tfn_factory_blob_len = %du;\n" % (len(blob), _c_bytes(blob or b"\0"), len(blob)))
    lines = ["/* Generated by tinyfleet flash nano33. */", "#ifndef TFN_BUILD_CONFIG_H",
             "#define TFN_BUILD_CONFIG_H"]
    if config is None:  # --print without a config: the steps still show, a compile says why it stops
        lines += ['#error "no node config: run tinyfleet flash nano33 --config node.json"', "#endif"]
        (sketch / "tfn_build_config.h").write_text("\n".join(lines) + "\n")
        return sketch
    cfg = nano33_config(config)
    lines += [
             "#define TFN_NODE_ID %s" % json.dumps(cfg["node_id"]),
             "#define TFN_FLEET_KEY_HEX %s" % json.dumps(cfg["hmac_key"]),
             "#define TFN_NODE_KEY_HEX %s" % json.dumps(cfg["node_key"]),
             "#define TFN_FEATURES %s" % {"vibration": "TFN_FEAT_VIBRATION",
                                          "sine": "TFN_FEAT_RAW"}[cfg["sensor"]],
             "#define TFN_TASK %s" % {"anomaly": "TFN_TASK_ANOMALY", "classify": "TFN_TASK_CLASSIFY",
                                      "regression": "TFN_TASK_REGRESS"}[cfg["task"]],
             "#define TFN_THRESHOLD %rf" % float(cfg["threshold"]),
             "#define TFN_SAMPLE_MS %du" % cfg["sample_ms"],
             "#define TFN_HEARTBEAT_MS %du" % cfg["heartbeat_ms"],
             "#define TFN_SEND_FEATURES %d" % int(cfg["send_features"]),
             "#define TFN_SENSE_REV2 %d" % int(rev2)]
    if tflm:
        headers = sorted(tflm.glob("*_model_data.h")) if tflm.is_dir() else []
        sources = [headers[0].with_suffix(e) for e in (".cc", ".c") if headers and headers[0].with_suffix(e).exists()]
        if len(headers) != 1 or not sources:
            raise FlashError("--tflm %s must hold one exported <name>_model_data.h and .cc (or .c) "
                             "(tinyfleet export MODEL --format c)" % tflm)
        shutil.copy2(headers[0], sketch)
        # The export is plain C; the Arduino builder compiles .c but skips .cc in a sketch folder.
        shutil.copy2(sources[0], sketch / (headers[0].stem + ".c"))
        ident = headers[0].name[:-len("_model_data.h")]
        lines += ["#define TFN_USE_TFLM 1", "#include \"%s\"" % headers[0].name,
                  "#define TFN_TFLM_MODEL g_%s_model_data" % ident]
    lines.append("#endif")
    (sketch / "tfn_build_config.h").write_text("\n".join(lines) + "\n")
    return sketch


def nano33_steps(port: str | None, fqbn: str, sketch: Path, tflm: bool = False, rev2: bool = False) -> list[Step]:
    cli = "arduino-cli"
    libs = NANO_LIBS[rev2] + ([TFLM_LIB] if tflm else [])
    core = ":".join(fqbn.split(":")[:2])
    steps: list[Step] = [
        ("install the board core %s" % core, [cli, "core", "install", core]),
        ("install the sensor libraries", [cli, "lib", "install", *libs]),
        ("compile the sketch", [cli, "compile", "--fqbn", fqbn, str(sketch)]),
    ]
    if port:
        steps.append(("upload to %s" % port, [cli, "upload", "-p", port, "--fqbn", fqbn, str(sketch)]))
    return steps


def flash_nano33(port: str | None, fqbn: str = DEFAULT_FQBN, config: Path | None = None,
                 model: Path | None = None, tflm: Path | None = None, rev2: bool = False,
                 print_only: bool = False, build: Path | None = None, echo=print) -> None:
    build = build or ROOT / "var" / "build" / "nano33" / "sketch"
    sketch = stage_nano33(build, config, model, tflm, rev2)
    steps = nano33_steps(port, fqbn, sketch, tflm is not None, rev2)
    if print_only:
        echo("# sketch staged in %s" % sketch)
        for what, argv in steps:
            echo("# %s\n%s" % (what, " ".join(argv)))
        return
    if not port:
        raise FlashError("--port is required to upload (or use --print to see the steps)")
    if config is None:
        raise FlashError("--config node.json is required to build the firmware (node_id, hmac_key ...)")
    if shutil.which("arduino-cli") is None:
        raise FlashError("arduino-cli is not installed or not on PATH "
                         "(https://arduino.github.io/arduino-cli/); the sketch is staged in %s, "
                         "run with --print to see the steps" % sketch)
    run(steps, echo)
    echo("Nano 33 BLE Sense on %s flashed (%s)" % (port, fqbn))
