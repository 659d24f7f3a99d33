"""`tinyfleet parity`: real TFLM, real runtimes, exit codes that CI can trust."""
import json
import struct
import subprocess
import sys
from pathlib import Path

from contract import blob as B
from tinyfleet.parity import RUNTIMES, compare

from blob_fixtures import blob, fix_crc, tflite

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyfleet", "parity", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _failed(result):
    return any(r["status"] in ("mismatch", "error") for r in result["runtimes"])


def test_tflite_json_reports_every_registered_runtime(tmp_path):
    model = tmp_path / "conv_softmax.tflite"
    model.write_bytes(tflite("conv_softmax"))
    r = _cli(model, "--inputs", 50, "--seed", 3, "--json")
    result = json.loads(r.stdout)
    assert result["golden"] == "tflm" and result["inputs"] == 50 and result["seed"] == 3
    assert [x["name"] for x in result["runtimes"]] == [n for n, _ in RUNTIMES]
    ref = result["runtimes"][0]
    assert ref["status"] == "ok" and ref["compared"] == 50 and ref["mismatching_bytes"] == 0
    assert r.returncode == (1 if _failed(result) else 0), r.stderr


def test_text_output_names_each_runtime(tmp_path):
    model = tmp_path / "sine.tflite"
    model.write_bytes(tflite("dense_sine"))
    r = _cli(model, "--inputs", 20)
    import re
    assert re.search(r"reference +20 inputs compared, +0 mismatching output bytes of 20\n", r.stdout), r.stdout
    for name, _ in RUNTIMES:
        assert "  %s " % name in r.stdout


def test_blob_is_compared_against_the_reference_runtime(tmp_path):
    model = tmp_path / "m.blob"
    model.write_bytes(blob("depthwise_avgpool"))
    result = json.loads(_cli(model, "--inputs", 10, "--json").stdout)
    assert result["golden"] == "reference" and result["runtimes"][0]["status"] == "ok"


def test_unsupported_op_exits_2_with_the_converter_error(tmp_path):
    model = tmp_path / "mul.tflite"
    model.write_bytes(tflite("unsupported_mul"))
    r = _cli(model)
    assert r.returncode == 2
    assert "unsupported op MUL (opcode 18) at operator 1" in r.stderr


def test_unreadable_file_exits_2(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not a model")
    assert _cli(junk).returncode == 2
    assert _cli(tmp_path / "missing.tflite").returncode == 2


def test_a_wrong_blob_is_caught_as_a_mismatch():
    """Change one bias in the blob: the reference runtime must disagree with TFLM."""
    b = bytearray(blob("dense_sine_pt"))
    hdr = B.parse(bytes(b))
    _, off, _ = B.ops(bytes(b), hdr)[-1]
    bias_off = B.fc_fields(bytes(b), off)[9]
    struct.pack_into("<i", b, bias_off, struct.unpack_from("<i", b, bias_off)[0] + 5000)
    result = compare(fix_crc(b), tflite("dense_sine_pt"), 100, 0, [RUNTIMES[0]])
    row = result["runtimes"][0]
    assert row["status"] == "mismatch" and row["mismatching_bytes"] > 0


def test_missing_runtime_is_not_available_not_a_crash():
    result = compare(blob("dense_sine"), None, 5, 0, [("ghost", "node_firmware.no_such_runtime:run_batch"),
                                                      ("nofunc", "training.reference_runtime:no_such_function")])
    assert [r["status"] for r in result["runtimes"]] == ["not available", "not available"]
    assert not _failed(result)


def test_float_input_model_exits_2(tmp_path):
    from training import testmodels
    model = tmp_path / "fio.tflite"
    model.write_bytes(testmodels.get("dense_sine_float_io"))
    r = _cli(model)
    assert r.returncode == 2 and "not int8" in r.stderr
