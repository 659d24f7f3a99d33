"""node_firmware/wasm/run.mjs: the Node runner other tests use to run code under real MicroPython."""
import shutil
import subprocess
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "node_firmware" / "wasm" / "run.mjs"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run(tmp_path, source, *opts):
    script = tmp_path / "s.py"
    script.write_text(source)
    return subprocess.run(["node", str(RUNNER), *map(str, opts), str(script), "a1"],
                          capture_output=True, text=True, timeout=60)


def test_ok_prints_and_passes_argv(tmp_path):
    r = run(tmp_path, "import sys\nprint(sys.implementation.name, sys.argv)\nprint('tail', end='')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "micropython ['s.py', 'a1']\ntail"


def test_uncaught_exception_is_exit_1_with_traceback(tmp_path):
    r = run(tmp_path, "def f():\n    raise KeyError('boom')\n\nf()\n")
    assert r.returncode == 1
    assert 'File "/app/s.py", line 2, in f' in r.stderr and "KeyError: boom" in r.stderr


@pytest.mark.parametrize("call, code", [("sys.exit(3)", 3), ("sys.exit()", 0), ("sys.exit('bad')", 1)])
def test_sys_exit_sets_the_exit_code(tmp_path, call, code):
    assert run(tmp_path, "import sys\n" + call + "\n").returncode == code


def test_files_in_fetch_out_and_then_shares_globals(tmp_path):
    (tmp_path / "in.bin").write_bytes(b"\x01\x02\x03")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("def double(b):\n    return bytes(2 * v for v in b)\n")
    then = tmp_path / "then.py"
    then.write_text("open('/data/out.bin', 'wb').write(helper.double(data))\n")
    r = run(tmp_path, "import helper\ndata = open('/data/in.bin', 'rb').read()\n",
            "--file", "%s:/data/in.bin" % (tmp_path / "in.bin"), "--mount", "%s:/lib" % (tmp_path / "lib"),
            "--then", then, "--fetch", "/data/out.bin:%s" % (tmp_path / "out.bin"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.bin").read_bytes() == b"\x02\x04\x06"


def test_usage_errors_are_exit_2(tmp_path):
    r = run(tmp_path, "print(1)\n", "--bogus")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = run(tmp_path, "print(1)\n", "--file", "/nonexistent/x:/data/x")
    assert r.returncode == 2 and "not found" in r.stderr
