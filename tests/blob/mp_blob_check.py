# Runs under MicroPython (node_firmware/wasm/run.mjs): parse blobs with
# contract/blob.py, print every decoded field as one line per blob, and check
# that malformed blobs raise BlobError. The CPython test compares the lines.
import sys

from contract import blob as B


def fields(buf, hdr, op, off):
    if op == B.OP_FULLY_CONNECTED:
        return B.fc_fields(buf, off)
    if op in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
        return B.conv_fields(buf, hdr, off)
    if op in (B.OP_AVERAGE_POOL_2D, B.OP_MAX_POOL_2D):
        return B.pool_fields(buf, off)
    if op == B.OP_RESHAPE:
        return B.reshape_fields(buf, off)
    if op == B.OP_QUANTIZE:
        return B.quantize_fields(buf, off)
    if op in (B.OP_LOGISTIC, B.OP_TANH):
        return B.lut_fields(buf, off)
    if op == B.OP_SOFTMAX:
        return B.softmax_fields(buf, off)
    if op == B.OP_ADD:
        return B.add_fields(buf, off)
    if op == B.OP_MEAN:
        f = B.mean_fields(buf, off)
        return f + B.mean_multiplier(f[3], f[4], 16)
    return None


def describe(buf):
    hdr = B.parse(buf)
    keys = sorted(k for k in hdr if k not in ("input_scale", "output_scale"))
    parts = [str([(k, hdr[k]) for k in keys]), str(B.tensors(buf, hdr))]
    for op, off, size in B.ops(buf, hdr):
        parts.append(str((B.OP_NAMES[op], size, tuple(fields(buf, hdr, op, off)))))
    return " ".join(parts)


for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    print(describe(data))
    bad = bytearray(data)
    bad[len(bad) - 1] ^= 1
    for broken in (b"XXXX" + data[4:], data[:len(data) - 8], bytes(bad)):
        try:
            B.parse(broken)
            print("ACCEPTED BROKEN BLOB")
        except B.BlobError as e:
            print("rejected:", e)
