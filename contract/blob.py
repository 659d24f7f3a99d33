"""Reader of the TinyFleet model blob (docs/model-blob.md, format version 1).

The one reader every Python runtime uses; it runs under CPython and MicroPython
(only `struct` and `binascii`). Field decoders return ints and *byte offsets*
of arrays inside the blob, never copies: weights stay where they are (flash or
the OTA buffer), which is what keeps an ESP32 inside its RAM.
"""
import json
import struct
from binascii import crc32

MAGIC = b"TFMB"
FORMAT_VERSION = 1
HEADER_FIXED = 41  # bytes before the model name
FLAG_META = 0x01   # header flag: a JSON metadata object follows the name
MAX_META = 1024    # bytes of metadata JSON
MAX_ARENA = 4 * 0xFFFF  # tensor offsets are u16 in units of 4 bytes
TENSOR_SIZE = 12

# Opcodes are TFLite BuiltinOperator codes.
OP_ADD = 0
OP_AVERAGE_POOL_2D = 1
OP_CONV_2D = 3
OP_DEPTHWISE_CONV_2D = 4
OP_FULLY_CONNECTED = 9
OP_LOGISTIC = 14
OP_MAX_POOL_2D = 17
OP_RESHAPE = 22
OP_SOFTMAX = 25
OP_TANH = 28
OP_MEAN = 40
OP_QUANTIZE = 114

OP_NAMES = {
    OP_ADD: "ADD",
    OP_AVERAGE_POOL_2D: "AVERAGE_POOL_2D",
    OP_CONV_2D: "CONV_2D",
    OP_DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
    OP_FULLY_CONNECTED: "FULLY_CONNECTED",
    OP_LOGISTIC: "LOGISTIC",
    OP_MAX_POOL_2D: "MAX_POOL_2D",
    OP_RESHAPE: "RESHAPE",
    OP_SOFTMAX: "SOFTMAX",
    OP_TANH: "TANH",
    OP_MEAN: "MEAN",
    OP_QUANTIZE: "QUANTIZE",
}


class BlobError(ValueError):
    """The blob is malformed; the message says how."""


def align4(n):
    return (n + 3) & ~3


def _u16(buf, off):
    return struct.unpack_from("<H", buf, off)[0]


def _u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def _i32(buf, off):
    return struct.unpack_from("<i", buf, off)[0]


def _i8(buf, off):
    v = buf[off]
    return v - 256 if v > 127 else v


def parse(buf):
    """Validate the whole blob and return its header as a dict.

    Checks magic, version, sizes, crc32, every tensor and every op record, so
    a runtime that got a dict back can index without further bounds checks.
    Keys: version, flags, header_size, blob_size, crc, model_version,
    n_tensors, n_ops, arena_size, input, output, input_scale, output_scale,
    name, meta, tensors_off, ops_off, input_zero_point, output_zero_point.
    `meta` is the optional metadata object ({} when absent): task, threshold, classes.
    """
    n = len(buf)
    if n < 16:
        raise BlobError("truncated blob: %d bytes, the header alone needs %d" % (n, HEADER_FIXED + 3))
    if bytes(buf[0:4]) != MAGIC:
        raise BlobError("bad magic %r (expected %r)" % (bytes(buf[0:4]), MAGIC))
    version = buf[4]
    if version != FORMAT_VERSION:
        raise BlobError("unsupported format version %d (this reader knows %d)" % (version, FORMAT_VERSION))
    header_size = _u16(buf, 6)
    blob_size = _u32(buf, 8)
    if blob_size > n:
        raise BlobError("truncated blob: %d bytes, header says %d" % (n, blob_size))
    if header_size < HEADER_FIXED + 1 or header_size % 4 or header_size > blob_size:
        raise BlobError("bad header_size %d" % header_size)
    crc = _u32(buf, 12)
    actual = crc32(memoryview(buf)[16:blob_size]) & 0xFFFFFFFF
    if actual != crc:
        raise BlobError("crc32 mismatch: header 0x%08x, data 0x%08x" % (crc, actual))
    name_len = buf[40]
    if name_len < 1 or name_len > 31 or HEADER_FIXED + name_len > header_size:
        raise BlobError("bad model name length %d" % name_len)
    for ch in bytes(buf[41:41 + name_len]):
        if ch < 32 or ch > 126:
            raise BlobError("model name is not printable ASCII")
    meta = {}
    if buf[5] & FLAG_META:
        at = HEADER_FIXED + name_len
        if at + 2 > header_size or at + 2 + _u16(buf, at) > header_size:
            raise BlobError("metadata runs past the header")
        try:
            meta = json.loads(bytes(buf[at + 2:at + 2 + _u16(buf, at)]))
        except Exception:
            raise BlobError("metadata is not valid JSON")
        if not isinstance(meta, dict):
            raise BlobError("metadata must be a JSON object")
    hdr = {
        "version": version,
        "flags": buf[5],
        "header_size": header_size,
        "blob_size": blob_size,
        "crc": crc,
        "model_version": _u32(buf, 16),
        "n_tensors": _u16(buf, 20),
        "n_ops": _u16(buf, 22),
        "arena_size": _u32(buf, 24),
        "input": _u16(buf, 28),
        "output": _u16(buf, 30),
        "input_scale": struct.unpack_from("<f", buf, 32)[0],
        "output_scale": struct.unpack_from("<f", buf, 36)[0],
        "name": bytes(buf[41:41 + name_len]).decode(),
        "meta": meta,
        "tensors_off": header_size,
        "ops_off": header_size + TENSOR_SIZE * _u16(buf, 20),
    }
    if hdr["arena_size"] > MAX_ARENA:
        raise BlobError("arena_size %d exceeds %d bytes" % (hdr["arena_size"], MAX_ARENA))
    if hdr["ops_off"] > blob_size:
        raise BlobError("truncated blob: tensor table ends at %d, blob_size %d" % (hdr["ops_off"], blob_size))
    ts = tensors(buf, hdr)
    for i in range(len(ts)):
        off, dims, zp, is_const = ts[i]
        end = off + dims[0] * dims[1] * dims[2] * dims[3]
        limit = blob_size if is_const else hdr["arena_size"]
        if end > limit:
            raise BlobError("tensor %d out of bounds: ends at %d, %s is %d bytes"
                            % (i, end, "blob" if is_const else "arena", limit))
    for key in ("input", "output"):
        if hdr[key] >= hdr["n_tensors"]:
            raise BlobError("%s tensor %d out of range (%d tensors)" % (key, hdr[key], hdr["n_tensors"]))
    hdr["input_zero_point"] = ts[hdr["input"]][2]
    hdr["output_zero_point"] = ts[hdr["output"]][2]
    for opcode, off, size in ops(buf, hdr):
        for t in op_tensors(buf, opcode, off):
            if t >= hdr["n_tensors"]:
                raise BlobError("%s record at %d: tensor %d out of range (%d tensors)"
                                % (OP_NAMES[opcode], off, t, hdr["n_tensors"]))
        need = record_need(buf, hdr, opcode, off)
        if need > size:
            raise BlobError("truncated %s record at %d: needs %d bytes, record_size %d"
                            % (OP_NAMES[opcode], off, need, size))
        why = _shape_error(buf, hdr, ts, opcode, off)
        if why:
            raise BlobError("%s record at %d: %s" % (OP_NAMES[opcode], off, why))
        for t in op_tensors(buf, opcode, off):
            if t >= hdr["n_tensors"]:
                raise BlobError("%s record at %d: tensor %d out of range (%d tensors)"
                                % (OP_NAMES[opcode], off, t, hdr["n_tensors"]))
    return hdr


def _size(dims):
    return dims[0] * dims[1] * dims[2] * dims[3]


def _shape_error(buf, hdr, ts, opcode, off):
    """Why an op's fields and tensor shapes are inconsistent (so a runtime
    could index outside a tensor), or None."""
    t = op_tensors(buf, opcode, off)
    di, do = ts[t[0]][1], ts[t[-1]][1]
    if opcode == OP_FULLY_CONNECTED:
        f = fc_fields(buf, off)
        if f[5] < 1 or f[6] < 1 or _size(di) % f[5] or _size(do) != _size(di) // f[5] * f[6]:
            return "n_in %d, n_out %d do not fit tensors %s -> %s" % (f[5], f[6], di, do)
        if not _shifts_ok(buf, f[8], f[6] if f[4] else 1):
            return "shift out of range"
        return None if f[2] <= f[3] else "act_min > act_max"
    if opcode in (OP_CONV_2D, OP_DEPTHWISE_CONV_2D):
        f = conv_fields(buf, hdr, off)
        if min(f[4], f[5], f[6], f[7], f[10], f[11]) < 1 or di[0] != do[0] or f[2] > f[3]:
            return "bad stride, dilation, kernel, batch or clamp"
        if opcode == OP_DEPTHWISE_CONV_2D and (f[13] < 1 or do[3] != di[3] * f[13]):
            return "channels %d -> %d with depth_multiplier %d" % (di[3], do[3], f[13])
        return None if _shifts_ok(buf, f[16], f[14] if f[12] else 1) else "shift out of range"
    if opcode in (OP_AVERAGE_POOL_2D, OP_MAX_POOL_2D):
        f = pool_fields(buf, off)
        if min(f[4], f[5], f[6], f[7]) < 1 or di[0] != do[0] or di[3] != do[3] or f[2] > f[3]:
            return "bad stride, filter, batch, channels or clamp"
        return None
    if opcode == OP_SOFTMAX:
        return None if di == do else "input %s and output %s differ" % (di, do)
    if opcode == OP_ADD:
        d2 = ts[t[1]][1]
        for k in range(4):
            if max(di[k], d2[k]) != do[k] or min(di[k], d2[k]) not in (1, do[k]):
                return "shapes %s + %s -> %s do not broadcast" % (di, d2, do)
        f = add_fields(buf, off)
        if not all(-31 <= f[k] <= 31 for k in (7, 9, 11)):
            return "shift out of range"
        return None if f[3] <= f[4] and 0 <= f[5] <= 30 else "bad clamp or left_shift"
    if opcode == OP_MEAN:
        mask = buf[off + 8]
        n = 1
        for k in range(4):
            if mask & (1 << k):
                n *= di[k]
        if mask > 15 or _size(do) * n != _size(di):
            return "axis mask %d does not turn %s into %s" % (mask, di, do)
        return None if -31 <= mean_fields(buf, off)[4] <= 31 else "shift out of range"
    if opcode == OP_QUANTIZE and not -31 <= quantize_fields(buf, off)[3] <= 31:
        return "shift out of range"
    # RESHAPE, QUANTIZE, LOGISTIC, TANH: elementwise
    return None if _size(di) == _size(do) else "input %s and output %s differ in size" % (di, do)


def _shifts_ok(buf, shift_off, m):
    for i in range(m):
        if not -31 <= _i8(buf, shift_off + i) <= 31:
            return False
    return True


def tensors(buf, hdr):
    """[(offset_bytes, (n, h, w, c), zero_point, is_const)] in table order.

    offset_bytes is into the arena for activations, into the blob for constants.
    """
    out = []
    base = hdr["tensors_off"]
    for i in range(hdr["n_tensors"]):
        o = base + TENSOR_SIZE * i
        off4, n, h, w, c = struct.unpack_from("<HHHHH", buf, o)
        out.append((off4 * 4, (n, h, w, c), _i8(buf, o + 10), buf[o + 11] & 1))
    return out


def ops(buf, hdr):
    """[(opcode, record_offset, record_size)] in execution order.

    Raises BlobError on an unknown opcode (naming it) or a record that does not
    fit in the blob.
    """
    out = []
    off = hdr["ops_off"]
    end = hdr["blob_size"]
    for i in range(hdr["n_ops"]):
        if off + 4 > end:
            raise BlobError("truncated blob: op %d header at %d, blob_size %d" % (i, off, end))
        opcode = buf[off]
        size = _u16(buf, off + 2)
        if opcode not in OP_NAMES:
            raise BlobError("unknown opcode %d (op %d at offset %d)" % (opcode, i, off))
        if size < 8 or size % 4:
            raise BlobError("bad record_size %d for op %d (%s)" % (size, i, OP_NAMES[opcode]))
        if off + size > end:
            raise BlobError("truncated blob: op %d (%s) ends at %d, blob_size %d"
                            % (i, OP_NAMES[opcode], off + size, end))
        out.append((opcode, off, size))
        off += size
    return out


def op_tensors(buf, opcode, off):
    """Tensor indices an op record names (inputs then output)."""
    if opcode == OP_ADD:
        return (_u16(buf, off + 4), _u16(buf, off + 6), _u16(buf, off + 8))
    return (_u16(buf, off + 4), _u16(buf, off + 6))


def _dims(buf, hdr, t):
    o = hdr["tensors_off"] + TENSOR_SIZE * t
    return struct.unpack_from("<HHHH", buf, o + 2)


def _weights_layout(off, fixed, m, n_out, n_w):
    """Offsets of multipliers, shifts, bias, weights after `fixed` bytes; and the end."""
    mult_off = off + fixed
    shift_off = mult_off + 4 * m
    bias_off = shift_off + align4(m)
    w_off = bias_off + 4 * n_out
    return mult_off, shift_off, bias_off, w_off, w_off + align4(n_w)


def record_need(buf, hdr, opcode, off):
    """Bytes a record must have for its fixed fields and arrays."""
    if opcode == OP_FULLY_CONNECTED:
        r = fc_fields(buf, off)
        return r[-1] + align4(r[5] * r[6]) - off
    if opcode in (OP_CONV_2D, OP_DEPTHWISE_CONV_2D):
        if _u16(buf, off + 4) >= hdr["n_tensors"] or _u16(buf, off + 6) >= hdr["n_tensors"]:
            return 24
        r = conv_fields(buf, hdr, off)
        return r[-1] - off
    if opcode in (OP_AVERAGE_POOL_2D, OP_MAX_POOL_2D):
        return 16
    if opcode == OP_RESHAPE:
        return 8
    if opcode == OP_QUANTIZE:
        return 16
    if opcode in (OP_LOGISTIC, OP_TANH):
        return 8 + 256
    if opcode == OP_SOFTMAX:
        return 8 + 4 * 256
    if opcode == OP_ADD:
        return 40
    if opcode == OP_MEAN:
        return 20
    raise BlobError("unknown opcode %d" % opcode)


def fc_fields(buf, off):
    """FULLY_CONNECTED record at `off` ->
    (inp, out, act_min, act_max, per_channel, n_in, n_out,
     mult_off, shift_off, bias_off, w_off).

    mult_off: i32[m], shift_off: i8[m] (m = n_out if per_channel else 1),
    bias_off: i32[n_out], w_off: i8[n_out * n_in] row-major [out][in].
    """
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    per_channel = buf[off + 10]
    n_in, n_out = struct.unpack_from("<HH", buf, off + 12)
    m = n_out if per_channel else 1
    mult_off, shift_off, bias_off, w_off, _ = _weights_layout(off, 16, m, n_out, 0)
    return (inp, out, _i8(buf, off + 8), _i8(buf, off + 9), per_channel, n_in, n_out,
            mult_off, shift_off, bias_off, w_off)


def conv_fields(buf, hdr, off):
    """CONV_2D / DEPTHWISE_CONV_2D record at `off` ->
    (inp, out, act_min, act_max, stride_h, stride_w, dilation_h, dilation_w,
     pad_top, pad_left, kernel_h, kernel_w, per_channel, depth_multiplier,
     out_channels, mult_off, shift_off, bias_off, w_off, end).

    out_channels is read from the output tensor's dims (hence `hdr`).
    Weights: CONV_2D [out_c][kh][kw][in_c], DEPTHWISE [kh][kw][out_c].
    `end` is the offset just past the padded weights.
    """
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    sh, sw, dh, dw, pt, pl = struct.unpack_from("<BBBBBB", buf, off + 10)
    kh, kw = struct.unpack_from("<HH", buf, off + 16)
    per_channel = buf[off + 20]
    depth_multiplier = buf[off + 21]
    out_c = _dims(buf, hdr, out)[3]
    in_c = _dims(buf, hdr, inp)[3]
    m = out_c if per_channel else 1
    n_w = kh * kw * out_c * (1 if buf[off] == OP_DEPTHWISE_CONV_2D else in_c)
    mult_off, shift_off, bias_off, w_off, end = _weights_layout(off, 24, m, out_c, n_w)
    return (inp, out, _i8(buf, off + 8), _i8(buf, off + 9), sh, sw, dh, dw, pt, pl, kh, kw,
            per_channel, depth_multiplier, out_c, mult_off, shift_off, bias_off, w_off, end)


def pool_fields(buf, off):
    """AVERAGE_POOL_2D / MAX_POOL_2D record ->
    (inp, out, act_min, act_max, stride_h, stride_w, filter_h, filter_w, pad_top, pad_left)."""
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    sh, sw, fh, fw, pt, pl = struct.unpack_from("<BBBBBB", buf, off + 10)
    return (inp, out, _i8(buf, off + 8), _i8(buf, off + 9), sh, sw, fh, fw, pt, pl)


def reshape_fields(buf, off):
    """RESHAPE record -> (inp, out)."""
    return struct.unpack_from("<HH", buf, off + 4)


def quantize_fields(buf, off):
    """QUANTIZE (int8 -> int8) record -> (inp, out, multiplier, shift)."""
    inp, out, m, s = struct.unpack_from("<HHii", buf, off + 4)
    return (inp, out, m, s)


def lut_fields(buf, off):
    """LOGISTIC / TANH record -> (inp, out, lut_off); i8 lut[256], y = lut[x + 128]."""
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    return (inp, out, off + 8)


def softmax_fields(buf, off):
    """SOFTMAX record -> (inp, out, exp_lut_off); i32 exp_lut[256]."""
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    return (inp, out, off + 8)


def add_fields(buf, off):
    """ADD record -> (in1, in2, out, act_min, act_max, left_shift,
    mult1, shift1, mult2, shift2, mult_out, shift_out)."""
    in1, in2, out = struct.unpack_from("<HHH", buf, off + 4)
    ls, m1, s1, m2, s2, mo, so = struct.unpack_from("<iiiiiii", buf, off + 12)
    return (in1, in2, out, _i8(buf, off + 10), _i8(buf, off + 11), ls, m1, s1, m2, s2, mo, so)


def mean_fields(buf, off):
    """MEAN record -> (inp, out, axis_mask, multiplier, shift).

    multiplier/shift are TFLM's QuantizeMultiplier(input_scale / output_scale);
    mean_multiplier() folds in the 1/n of the mean exactly as TFLM does.
    """
    inp, out = struct.unpack_from("<HH", buf, off + 4)
    m, s = struct.unpack_from("<ii", buf, off + 12)
    return (inp, out, buf[off + 8], m, s)


def mean_multiplier(multiplier, shift, n):
    """TFLM QuantizedMeanOrSum: fold 1/n (n = reduced element count) into
    (multiplier, shift) with integer math only -> (multiplier, shift)."""
    s = -1  # 63 - CountLeadingZeros(uint64 n); no int.bit_length on MicroPython
    while n >> (s + 1):
        s += 1
    if s > 32:
        s = 32
    if s > 31 + shift:
        s = 31 + shift
    return (multiplier << s) // n, shift - s


def check_arena(hdr, arena_len, budget=None):
    """Raise BlobError unless an arena of arena_len bytes (and a RAM budget) fits."""
    if arena_len < hdr["arena_size"]:
        raise BlobError("arena of %d bytes is smaller than arena_size %d" % (arena_len, hdr["arena_size"]))
    if budget is not None and hdr["arena_size"] > budget:
        raise BlobError("model needs %d bytes of arena, more than the %d byte budget"
                        % (hdr["arena_size"], budget))
