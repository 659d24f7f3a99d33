"""Host harness for the Nano 33 C core: builds node_firmware/nano33 with gcc
(-std=c99 -Wall -Wextra -Werror -pedantic), runs it on one end of a pty pair that
stands in for the USB serial port, and plays the gateway with contract.protocol."""
from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import threading
import time
import tty
from pathlib import Path

from contract import protocol as P

ROOT = Path(__file__).resolve().parents[2]
NANO = ROOT / "node_firmware" / "nano33"
CORE = NANO / "core"
RUNTIME = ROOT / "node_firmware" / "c"
BUILD = ROOT / "var" / "build" / "nano33"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
FLEET_KEY = b"fleet-secret-key-0123456789"
NODE_KEY = b"node-7-own-key"


def core_sources() -> list[Path]:
    return sorted(CORE.glob("*.c"))


def _sources() -> list[Path]:
    return (sorted(CORE.glob("*.[ch]")) + [RUNTIME / "tfm_runtime.c", RUNTIME / "tfm_runtime.h"]
            + sorted(RUNTIME.glob("tfm_kernels.h")) + [NANO / "host" / "tfn_host.c"])


def build_host() -> Path:
    """The host program, built once per content hash of its sources."""
    h = hashlib.sha256()
    for p in _sources():
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    out = BUILD / ("tfn_host-%s" % h.hexdigest()[:16])
    if out.exists():
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp%d" % os.getpid())
    cmd = ["gcc", *WARN, "-O2", "-I", str(CORE), "-I", str(RUNTIME), *map(str, core_sources()),
           str(RUNTIME / "tfm_runtime.c"), str(NANO / "host" / "tfn_host.c"), "-lm", "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("host build failed:\n" + r.stdout + r.stderr)
    tmp.replace(out)
    return out


def tool(*args: str, data: bytes = b"") -> subprocess.CompletedProcess:
    """Runs a tool mode of the host program (sha256, hmac, frame-*, features, signing-bytes)."""
    return subprocess.run([str(build_host()), *args], input=data, capture_output=True, timeout=60)


class NodeDied(RuntimeError):
    """The node process ended (a simulated power cut, or a crash)."""


def node_args(state_dir: Path, factory: bytes | None, node_id: str, extra: tuple = (),
              node_key: bytes | None = NODE_KEY) -> list[str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    args = [str(build_host()), "node", "--state", str(state_dir), "--node-id", node_id,
            "--fleet-key", FLEET_KEY.hex(), "--sample-ms", "100", "--heartbeat-ms", "300"]
    if node_key:
        args += ["--node-key", node_key.hex()]
    if factory is not None:
        (state_dir / "factory.blob").write_bytes(factory)
        args += ["--factory", str(state_dir / "factory.blob")]
    return args + list(extra)


class PortNode:
    """The C node on the master end of a pty; `port` is the slave's path, which a
    serial program (the gateway's bridge) opens like a USB serial device."""

    def __init__(self, state_dir: Path, factory: bytes | None = None, node_id: str = "nano-7",
                 extra: tuple = ()):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # keeps the tty alive and raw until the bridge opens it
        tty.setraw(self._master)
        self.port = os.ttyname(self._slave)
        self._args = node_args(state_dir, factory, node_id, extra)
        self.proc: subprocess.Popen | None = None

    def wait_opened(self, timeout: float = 10.0) -> None:
        """Until something in this process besides us holds the port open (the bridge thread)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            held = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    held += os.readlink("/proc/self/fd/" + fd) == self.port
                except OSError:
                    pass
            if held >= 2:
                return
            time.sleep(0.05)
        raise TimeoutError("nobody opened %s" % self.port)

    def start(self) -> None:
        """Powers the node on; start it after the serial program opened `port`
        (pyserial drops what was buffered before its open, like a real USB port)."""
        self.proc = subprocess.Popen(self._args, stdin=self._master, stdout=self._master, stderr=subprocess.PIPE)
        os.close(self._master)

    def stop(self) -> None:
        if self.proc is None:
            os.close(self._master)
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._slave)


class Node:
    """The C node on a pty. `frames` collects (kind, payload) it sends; undecodable
    lines land in `bad_lines` (there should be none)."""

    def __init__(self, state_dir: Path, factory: bytes | None = None, node_id: str = "nano-7",
                 extra: tuple = (), node_key: bytes | None = NODE_KEY):
        self.state_dir = state_dir
        self.node_id = node_id
        args = node_args(state_dir, factory, node_id, extra, node_key)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        self.frames: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, object]] = []
        self.bad_lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    kind, payload = P.decode_serial_frame(line + b"\n")
                    msg = payload if kind == P.OTA_CHUNK else P.decode(kind, payload)
                except P.ContractError:
                    self.bad_lines.append(line)
                    continue
                self.frames.put((kind, msg))

    def send(self, kind: str, payload: bytes) -> None:
        self.write(P.encode_serial_frame(kind, payload))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def next(self, kinds=None, timeout: float = 10.0):
        """The next frame of one of `kinds` (others are kept in `seen`)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %s frame from the node within %.0f s (stderr: %s)"
                                   % (kinds, timeout, self.stderr_so_far()))
            try:
                kind, msg = self.frames.get(timeout=min(left, 0.1))
            except queue.Empty:
                if self.proc.poll() is not None and self.frames.empty():
                    raise NodeDied("node exited with %d" % self.proc.returncode)
                continue
            self.seen.append((kind, msg))
            if kinds is None or kind in kinds:
                return kind, msg

    def stderr_so_far(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self) -> int:
        """Kills the process like a power cut and returns its exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=10)
        try:
            os.close(self.master)
        except OSError:
            pass
        return code


def serve_ota(node: Node, manifest: dict, blob: bytes, tamper=None, drop_after: int | None = None,
              timeout: float = 30.0) -> tuple[list[dict], list[dict]]:
    """Plays the gateway's OTA relay: offers `manifest`, answers chunk requests, and
    returns (ota/state messages, ota/request messages) once the node reports a final
    state. tamper(index, send_count, frame) -> frame lets a test corrupt chunks."""
    node.send(P.OTA_OFFER, P.encode(P.OTA_OFFER, manifest))
    states: list[dict] = []
    requests: list[dict] = []
    sent: dict[int, int] = {}
    cs = manifest["chunk_size"]
    end = time.monotonic() + timeout
    while True:
        kind, msg = node.next((P.OTA_STATE, P.OTA_REQUEST), timeout=max(0.1, end - time.monotonic()))
        if kind == P.OTA_STATE:
            states.append(msg)
            if msg["state"] in P.FINAL_STATES:
                return states, requests
            continue
        requests.append(msg)
        assert msg["deployment"] == manifest["deployment"] and msg["node"] == node.node_id
        for i in range(msg["index"], min(msg["index"] + msg["count"], P.chunk_count(len(blob), cs))):
            frame = P.encode_chunk(manifest["sha256"], i, blob[i * cs:(i + 1) * cs])
            sent[i] = sent.get(i, 0) + 1
            if tamper:
                frame = tamper(i, sent[i], frame)
            node.send(P.OTA_CHUNK, frame)


def golden(tflite: bytes, n: int = 4, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Golden vectors from TFLM, the reference."""
    import numpy as np

    from training import tflm
    n_in = tflm.input_size(tflite)
    x = np.random.default_rng(seed).integers(-128, 128, (n, n_in), dtype=np.int8)
    y = tflm.run_batch(tflite, x)
    return [(x[i].tobytes(), y[i].astype(np.int8).tobytes()) for i in range(n)]


# ------------------------------------------------------------------ emulated Cortex-M4

M4_DIR = ROOT / "node_firmware" / "c" / "m4"  # startup, linker script, semihosting (runtime helper's)


def m4_flags() -> tuple[list[str], list[str]]:
    """Compile and link flags of the runtime's own M4 builds, so both agree."""
    from node_firmware import c_host
    return list(c_host.M4_FLAGS), list(c_host.M4_LINK)


def build_m4() -> Path:
    """node_firmware/nano33/m4/tfn_m4.c + the core + tfm_runtime as an mps2-an386 ELF."""
    flags, link = m4_flags()
    srcs = _sources()[:-1] + [NANO / "m4" / "tfn_m4.c", M4_DIR / "startup.c", M4_DIR / "m4.ld",
                              M4_DIR / "semihost.h"]
    h = hashlib.sha256(" ".join(flags + link).encode())
    for p in srcs:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    out = BUILD / ("tfn_m4-%s.elf" % h.hexdigest()[:16])
    if out.exists():
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp%d" % os.getpid())
    cmd = ["arm-none-eabi-gcc", *WARN, *flags, "-I", str(CORE), "-I", str(RUNTIME), "-I", str(M4_DIR),
           str(M4_DIR / "startup.c"), str(NANO / "m4" / "tfn_m4.c"), *map(str, core_sources()),
           str(RUNTIME / "tfm_runtime.c"), *link, "-lm", "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("M4 build failed:\n" + r.stdout + r.stderr)
    tmp.replace(out)
    return out


def _symbol(elf: Path, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise RuntimeError("%s has no symbol %s" % (elf, name))


def run_m4(files: dict[str, bytes], work: Path, count: bool = False) -> dict[str, bytes]:
    """Runs the M4 image in `work` with the given input files; returns every file after the
    run. count=True adds the runtime helper's instruction-count plugin: icount.txt then
    holds one count per mark_begin/mark_end region (the first is the empty pair)."""
    work.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (work / name).write_bytes(data)
    elf = build_m4()
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if count:
        from node_firmware import c_host
        cmd += ["-plugin", "%s,begin=0x%x,end=0x%x,out=icount.txt"
                % (c_host.plugin(), _symbol(elf, "mark_begin"), _symbol(elf, "mark_end"))]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError("M4 run exited %d: %s" % (r.returncode, r.stderr))
    return {p.name: p.read_bytes() for p in work.iterdir()}


def core_objects_m4() -> list[Path]:
    """Each core source compiled alone at the runtime's M4 flags."""
    flags, _ = m4_flags()
    BUILD.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in core_sources():
        obj = BUILD / (src.stem + ".m4.o")
        tmp = obj.with_name(obj.name + ".tmp%d" % os.getpid())
        subprocess.run(["arm-none-eabi-gcc", *WARN, *flags, "-I", str(CORE), "-I", str(RUNTIME), "-c",
                        str(src), "-o", str(tmp)], check=True, capture_output=True)
        tmp.replace(obj)
        objs.append(obj)
    return objs


def core_size_m4() -> dict:
    """text/data/bss of the core alone (no runtime, no libc), at the M4 flags."""
    total = {"text": 0, "data": 0, "bss": 0}
    for obj in core_objects_m4():
        out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True).stdout
        text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
        total["text"] += text
        total["data"] += data
        total["bss"] += bss
    return total


# ------------------------------------------------------------------ the sketch on the emulated M4

SHIM = NANO / "shim"
SKETCH_INO = NANO / "tinyfleet_nano33" / "tinyfleet_nano33.ino"
ANOMALY = ROOT / "models" / "anomaly" / "1"  # committed reference artifacts (vibration features)
# What arduino-cli would pass for arduino:mbed_nano:nano33ble (variants/ARDUINO_NANO33BLE
# cflags.txt / cxxflags.txt: -std=gnu11 / -std=gnu++14, -fno-rtti, -fno-exceptions,
# -funsigned-char, -Os, sections), with -Werror on top and -Wno-unused-parameter dropped.
# The real core builds -mfloat-abi=softfp; the emulated build is hard-float like every other
# M4 build here (startup.c, newlib multilib); sketch_compile_only() also checks softfp.
SKETCH_CXX = ["-std=gnu++17", "-fno-rtti", "-fno-exceptions", "-funsigned-char", "-Wall", "-Wextra", "-Werror"]
SKETCH_C = ["-std=gnu11", "-funsigned-char", "-Wall", "-Wextra", "-Werror"]
CORE_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-Os",
              "-ffunction-sections", "-fdata-sections", "-fno-exceptions", "-funsigned-char"]


def sketch_config(d: Path, sensor: str = "vibration", task: str = "anomaly", threshold: float = 0.0229,
                  sample_ms: int = 1000, heartbeat_ms: int = 5000, send_features: bool = True) -> Path:
    import json
    d.mkdir(parents=True, exist_ok=True)
    p = d / "nano.json"
    p.write_text(json.dumps({"node_id": "nano-emu", "hmac_key": FLEET_KEY.hex(),
                             "node_key": NODE_KEY.hex(), "sensor": sensor, "task": task,
                             "threshold": threshold, "sample_ms": sample_ms,
                             "heartbeat_ms": heartbeat_ms, "send_features": send_features}))
    return p


def stage_sketch(d: Path, rev2: bool = False, tflm: bool = False, **cfg) -> Path:
    """The sketch folder exactly as `tinyfleet flash nano33` hands it to arduino-cli."""
    from node_firmware import flash
    from training import export
    tflm_dir = None
    if tflm:
        tflm_dir = d / "export"
        tflm_dir.mkdir(parents=True, exist_ok=True)
        header, source = export.c_array((ANOMALY / "int8.tflite").read_bytes(), "anomaly")
        (tflm_dir / "anomaly_model_data.h").write_text(header)
        (tflm_dir / "anomaly_model_data.cc").write_text(source)  # as `tinyfleet export --format c` names it
    return flash.stage_nano33(d / "build", sketch_config(d, **cfg), ANOMALY / "model.tfmb", tflm_dir, rev2)


def _ino_cpp(sketch: Path, out: Path) -> Path:
    """The .ino as arduino-cli compiles it: `#include <Arduino.h>` and a #line, then the text.
    (arduino-cli also inserts prototypes; the sketch declares everything before use.)"""
    ino = sketch / (sketch.name + ".ino")
    cpp = out / (sketch.name + ".ino.cpp")
    cpp.write_text('#include <Arduino.h>\n#line 1 "%s"\n' % ino + ino.read_text())
    return cpp


def _run(cmd: list, what: str) -> None:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("%s failed:\n%s\n%s%s" % (what, " ".join(map(str, cmd)), r.stdout, r.stderr))


def build_sketch(d: Path, rev2: bool = False, tflm: bool = False, extra: tuple = (), **cfg) -> Path:
    """Stages the sketch, compiles every file of it (and the shim's emulator) at the M4 flags
    with -Werror, and links an mps2-an386 image with the runtime helper's startup and
    linker script. Returns the ELF."""
    flags, link = m4_flags()
    sketch = stage_sketch(d, rev2, tflm, **cfg)
    obj = d / "obj"
    obj.mkdir(exist_ok=True)
    defs = ["-DTFN_SENSE_REV2=%d" % int(rev2), "-DTFN_USE_TFLM=%d" % int(tflm), *extra]
    inc = ["-I", sketch, "-I", SHIM / "include", "-I", SHIM / "emu", "-I", M4_DIR]
    objs = []
    for src in sorted(sketch.glob("*.c")):
        o = obj / (src.stem + ".o")
        _run(["arm-none-eabi-gcc", *SKETCH_C, *flags, *extra, *inc, "-c", src, "-o", o], "compile " + src.name)
        objs.append(o)
    cpp = _ino_cpp(sketch, obj)
    _run(["arm-none-eabi-g++", *SKETCH_CXX, *flags, *extra, "-I", sketch, "-I", SHIM / "include", "-c", cpp,
          "-o", obj / "sketch.o"], "compile the sketch")
    objs.append(obj / "sketch.o")
    emu = [SHIM / "emu" / "board_emu.cpp"] + ([SHIM / "emu" / "tflm_emu.cpp"] if tflm else [])
    for src in emu:
        o = obj / (src.stem + ".o")
        _run(["arm-none-eabi-g++", *SKETCH_CXX, *flags, *defs, *inc, "-c", src, "-o", o], "compile " + src.name)
        objs.append(o)
    for src in (SHIM / "emu" / "emu_io.c", M4_DIR / "startup.c"):
        o = obj / (src.stem + ".o")
        _run(["arm-none-eabi-gcc", *SKETCH_C, *flags, *inc, "-c", src, "-o", o], "compile " + src.name)
        objs.append(o)
    elf = d / "sketch.elf"
    _run(["arm-none-eabi-g++", *flags, *objs, *_cxx_link(link, obj), "-lm", "-o", elf], "link")
    return elf


def _cxx_link(link: list, obj: Path) -> list:
    """The runtime helper's link flags with its m4.ld swapped for a copy that also keeps
    .init_array (shim/emu/init_array.ld spliced in before .ARM.exidx)."""
    base = M4_DIR / "m4.ld"
    text = base.read_text()
    at = text.index("  .ARM.exidx")
    ld = obj / "m4_cxx.ld"
    ld.write_text(text[:at] + (SHIM / "emu" / "init_array.ld").read_text() + text[at:])
    return [str(ld) if str(a) == str(base) else a for a in link]


def sketch_compile_only(d: Path, rev2: bool = False, tflm: bool = False, extra: tuple = (),
                        edit=None, **cfg) -> list[str]:
    """The sketch translation unit alone at the board core's own flags (softfp, gnu++14);
    returns the compiler's diagnostics (empty when clean). `edit(text) -> text` changes the
    generated tfn_build_config.h first, as a user editing it by hand would."""
    sketch = stage_sketch(d, rev2, tflm, **cfg)
    if edit:
        conf = sketch / "tfn_build_config.h"
        conf.write_text(edit(conf.read_text()))
    cpp = _ino_cpp(sketch, d)
    r = subprocess.run(["arm-none-eabi-g++", "-std=gnu++14", "-fno-rtti", "-Wall", "-Wextra", "-Werror",
                        *CORE_FLAGS, *extra, "-I", str(sketch), "-I", str(SHIM / "include"), "-c", str(cpp),
                        "-o", str(d / "core_flags.o")], capture_output=True, text=True)
    return [r.stderr] if r.returncode else []


def run_sketch(elf: Path, work: Path, cfg: dict | str = "", serial_in: bytes = b"",
               files: dict | None = None, timeout: int = 600) -> dict:
    """Runs the sketch image in `work`; returns {"frames": [(kind, payload)], "bad": [lines],
    "report": {counter: int}, "files": {name: bytes}}."""
    work.mkdir(parents=True, exist_ok=True)
    for p in work.iterdir():
        if p.is_file():
            p.unlink()
    text = cfg if isinstance(cfg, str) else "".join("%s %s\n" % (k, v) for k, v in cfg.items())
    (work / "emu.cfg").write_text(text)
    (work / "serial_in.txt").write_bytes(serial_in)
    for name, data in (files or {}).items():
        (work / name).write_bytes(data)
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError("sketch run exited %d: %s" % (r.returncode, r.stderr))
    frames, bad = [], []
    for line in (work / "serial_out.txt").read_bytes().splitlines():
        try:
            frames.append(P.decode_serial_frame(line + b"\n"))
        except P.ContractError:
            bad.append(line)
    report = {}
    for line in (work / "emu_report.txt").read_text().splitlines():
        k, v = line.split()
        report[k] = int(v)
    return {"frames": frames, "bad": bad, "report": report,
            "files": {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}}
