"""contract/blob.py rejects every malformed blob with a clear BlobError, never a crash."""
import struct

import pytest

from contract import blob as B

from blob_fixtures import blob, fix_crc


def _edit(name: str, off: int, fmt: str, value) -> bytes:
    buf = bytearray(blob(name))
    struct.pack_into(fmt, buf, off, value)
    return fix_crc(buf)


def test_parses_a_good_blob():
    b = blob("dense_sine_pt")
    hdr = B.parse(b)
    assert hdr["name"] == "dense_sine_pt" and hdr["version"] == B.FORMAT_VERSION
    assert hdr["blob_size"] == len(b) and hdr["n_ops"] == 3
    ts = B.tensors(b, hdr)
    assert ts[hdr["input"]][1] == (1, 1, 1, 1) and ts[hdr["output"]][1] == (1, 1, 1, 1)
    assert [B.OP_NAMES[op] for op, _, _ in B.ops(b, hdr)] == ["FULLY_CONNECTED"] * 3
    inp, out, lo, hi, pc, n_in, n_out, mo, so, bo, wo = B.fc_fields(b, B.ops(b, hdr)[1][1])
    assert (n_in, n_out, pc) == (16, 16, 0)
    assert all(o % 4 == 0 for o in (mo, so, bo, wo))


def test_longer_buffer_is_fine():
    """A blob read from a flash slot may be followed by erased bytes."""
    b = blob("dense_sine_pt")
    assert B.parse(b + b"\xff" * 100)["blob_size"] == len(b)


def test_bad_magic():
    with pytest.raises(B.BlobError, match="bad magic"):
        B.parse(b"XXXX" + blob("dense_sine_pt")[4:])


def test_wrong_version():
    buf = bytearray(blob("dense_sine_pt"))
    buf[4] = 2
    with pytest.raises(B.BlobError, match="unsupported format version 2"):
        B.parse(bytes(buf))


@pytest.mark.parametrize("cut", [0, 10, 40, 100, 1])
def test_truncated(cut):
    b = blob("dense_sine_pt")
    with pytest.raises(B.BlobError, match="truncated"):
        B.parse(b[: len(b) - cut] if cut else b[:12])


def test_crc_mismatch():
    buf = bytearray(blob("dense_sine_pt"))
    buf[-1] ^= 0x01  # one weight bit
    with pytest.raises(B.BlobError, match="crc32 mismatch"):
        B.parse(bytes(buf))


def test_unknown_opcode_is_named():
    b = blob("dense_sine_pt")
    first_op = B.parse(b)["ops_off"]
    with pytest.raises(B.BlobError, match="unknown opcode 99"):
        B.parse(_edit("dense_sine_pt", first_op, "<B", 99))


def test_tensor_out_of_arena():
    b = blob("dense_sine_pt")
    hdr = B.parse(b)
    t = hdr["tensors_off"] + 12 * hdr["output"]
    with pytest.raises(B.BlobError, match="out of bounds"):
        B.parse(_edit("dense_sine_pt", t + 8, "<H", 4000))  # C dim: 4000 bytes > arena


def test_op_tensor_index_out_of_range():
    b = blob("dense_sine_pt")
    first_op = B.parse(b)["ops_off"]
    with pytest.raises(B.BlobError, match="tensor 77 out of range"):
        B.parse(_edit("dense_sine_pt", first_op + 6, "<H", 77))


def test_record_shorter_than_its_arrays():
    b = blob("dense_sine_pt")
    _, off, size = B.ops(b, B.parse(b))[-1]
    with pytest.raises(B.BlobError, match="truncated FULLY_CONNECTED record"):
        B.parse(_edit("dense_sine_pt", off + 14, "<H", 200))  # n_out 1 -> 200


def test_header_size_and_name_checked():
    with pytest.raises(B.BlobError, match="header_size"):
        B.parse(_edit("dense_sine_pt", 6, "<H", 2))
    with pytest.raises(B.BlobError, match="name length"):
        B.parse(_edit("dense_sine_pt", 40, "<B", 0))


def test_arena_and_budget_checks():
    hdr = B.parse(blob("conv_softmax"))
    B.check_arena(hdr, hdr["arena_size"])
    with pytest.raises(B.BlobError, match="smaller than arena_size"):
        B.check_arena(hdr, hdr["arena_size"] - 4)
    with pytest.raises(B.BlobError, match="budget"):
        B.check_arena(hdr, 1 << 20, budget=hdr["arena_size"] - 1)


def test_random_corruption_never_crashes():
    """Any byte flipped anywhere: BlobError or a still-valid blob, nothing else."""
    import random
    b = blob("conv_softmax")
    rng = random.Random(7)
    for _ in range(300):
        buf = bytearray(b)
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        data = fix_crc(buf) if rng.random() < 0.8 else bytes(buf)
        try:
            B.parse(data)
        except B.BlobError:
            pass


def test_metadata_round_trips_and_runtimes_ignore_it():
    import numpy as np
    from training import reference_runtime, testmodels, tflite_to_blob
    tfl = testmodels.get("autoencoder")
    plain = tflite_to_blob.convert(tfl, "ae", 1)
    meta = {"task": "anomaly", "threshold": 0.0229, "classes": ["normal", "anomaly"]}
    tagged = tflite_to_blob.convert(tfl, "ae", 1, meta=meta)
    assert B.parse(tagged)["meta"] == meta and B.parse(plain)["meta"] == {}
    x = np.random.default_rng(1).integers(-128, 128, (40, reference_runtime.Model(plain).input_size), dtype=np.int8)
    assert (reference_runtime.run_batch(tagged, x) == reference_runtime.run_batch(plain, x)).all()


def test_bad_metadata_is_rejected():
    import struct
    import zlib
    from training import testmodels, tflite_to_blob
    tagged = bytearray(tflite_to_blob.convert(testmodels.get("dense_sine"), "s", 1, meta={"task": "regression"}))
    at = 41 + tagged[40] + 2
    tagged[at] = ord("[")  # still valid JSON? no: '["task":...' is not
    struct.pack_into("<I", tagged, 12, zlib.crc32(tagged[16:]) & 0xFFFFFFFF)
    with pytest.raises(B.BlobError, match="metadata"):
        B.parse(bytes(tagged))
    with pytest.raises(tflite_to_blob.ConversionError, match="metadata"):
        tflite_to_blob.convert(testmodels.get("dense_sine"), "s", 1, meta={"x": "y" * 2000})
