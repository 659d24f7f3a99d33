"""Pure-MicroPython int8 runtime for TinyFleet model blobs (docs/model-blob.md).

Bit-exact with the TFLM interpreter: integer math only (ESP32 floats are 32-bit),
TFLM's double rounding, int32 wrap-around where TFLM's C code wraps. Weights stay
in the blob (bytes, read through a memoryview); the arena, per-op tables and the
scratch lists are allocated once, in the constructor, so invoke() leaves the heap
as it found it (only short-lived temporaries).

Speed notes (CPU time in the MicroPython 1.27 wasm build, micropython_host.bench):
a FULLY_CONNECTED row longer than 16 is turned into offset-binary bytes with one XOR
on a big int (u = w + 128, so the inner loop multiplies plain bytes and 128 * sum(x)
is subtracted once per row): 10-18% faster at 64-128 inputs, no gain below. ADD and
QUANTIZE depend on one int8 input each, so they become 256-entry tables at load.
No native/viper code: the wasm build rejects those emitters, so nothing could be
measured, and the plain path is what runs everywhere.
"""
import struct
from array import array

from contract import blob as B
from contract.blob import BlobError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# Signed value of a raw byte (activations are int8 stored in a bytearray).
_S8 = tuple(v - 256 if v > 127 else v for v in range(256))


class BudgetError(BlobError):
    """The model needs more RAM than the caller allows (or the given arena is too small)."""


# ---------------------------------------------------------------- TFLM integer math

def _wrap32(x: int) -> int:
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul (C truncating division by 2^31)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    if ab >= 0:
        return (ab + (1 << 30)) >> 31
    return -(((1 << 30) - 1 - ab) >> 31)


def _rdbpot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def _mbqm(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier for an int32 x (positive shift = left)."""
    if shift > 0:
        return _srdhm(_wrap32(x << shift), multiplier)
    return _rdbpot(_srdhm(x, multiplier), -shift)


def _requant(acc: int, m: int, s: int, zo: int, lo: int, hi: int) -> int:
    """clamp(MBQM(wrap32(acc), m, s) + zo, lo, hi) as a raw byte, in one call (the per-output
    step of every weighted op; three nested calls cost more than the arithmetic)."""
    if acc > INT32_MAX or acc < INT32_MIN:
        acc = _wrap32(acc)
    if s > 0:
        acc = _wrap32(acc << s)
    ab = acc * m
    if m == INT32_MIN and acc == INT32_MIN:
        y = INT32_MAX
    elif ab >= 0:
        y = (ab + 0x40000000) >> 31
    else:
        y = -((0x3FFFFFFF - ab) >> 31)
    if s < 0:
        mk = (1 << -s) - 1
        r = y & mk
        y >>= -s
        if r > (mk >> 1) + (1 if y < 0 else 0):
            y += 1
    y += zo
    return (lo if y < lo else hi if y > hi else y) & 0xFF


def _sat_mul_pot(x: int, exponent: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT for exponent >= 0."""
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return _wrap32(x << exponent)


def _clz32(x: int) -> int:
    """Count leading zeros of a uint32 (MicroPython has no int.bit_length)."""
    n = 32
    while x:
        x >>= 1
        n -= 1
    return n


def _one_over_one_plus_x(a: int) -> int:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in, Q0.31 out)."""
    s = a + INT32_MAX  # RoundingHalfSum(a, One)
    half = (s + 1) // 2 if s >= 0 else -((1 - s) // 2)
    x = _wrap32(1515870810 + _srdhm(half, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half, x))
        x = _wrap32(x + _sat_mul_pot(_srdhm(x, one_minus), 2))
    return _sat_mul_pot(x, 1)


# ---------------------------------------------------------------- the runtime

class Model:
    """An int8 model blob ready to run: Model(blob_bytes_or_path, budget=None, arena=None).

    `ram_bytes` is the heap this model takes besides the blob itself (which the
    caller already holds: OTA buffer or file contents): arena + per-op tables +
    scratch lists + its Python objects. A `budget` below it, or a caller `arena`
    shorter than arena_size, raises BudgetError before anything large is
    allocated. Any malformed blob raises BlobError (contract.blob) saying what
    is wrong; invoke() with the wrong input length raises ValueError.
    """

    def __init__(self, blob, budget=None, arena=None):
        if isinstance(blob, str):
            with open(blob, "rb") as f:
                blob = f.read()
        self.blob = blob
        self.hdr = hdr = B.parse(blob)
        self._mv = memoryview(blob)
        self._t = B.tensors(blob, hdr)
        self.name = hdr["name"]
        self.model_version = hdr["model_version"]
        self.input_scale = hdr["input_scale"]
        self.output_scale = hdr["output_scale"]
        self.input_zero_point = hdr["input_zero_point"]
        self.output_zero_point = hdr["output_zero_point"]
        self.arena_size = hdr["arena_size"]
        ti, to = self._t[hdr["input"]], self._t[hdr["output"]]
        if ti[3] or to[3]:
            raise BlobError("model input/output tensor must not be a constant")
        self.input_size = _count(ti[1])
        self.output_size = _count(to[1])
        plan = [self._plan(op, off) for op, off, _ in B.ops(blob, hdr)]
        xs_len = 0
        acc_len = 0
        tables = 0
        for p in plan:
            xs_len = max(xs_len, p[1])
            acc_len = max(acc_len, p[2])
            tables += p[3]
        # Sizes as on a 32-bit port: 4 bytes per list slot / int32 entry, plus the Python
        # objects of the model itself (fitted to gc.mem_alloc() in the wasm build, ~10%).
        overhead = 640 + 64 * hdr["n_tensors"] + 192 * hdr["n_ops"]
        self.ram_bytes = self.arena_size + 4 * (xs_len + acc_len) + tables + overhead
        if budget is not None and self.ram_bytes > budget:
            raise BudgetError("model %s needs %d bytes of RAM (arena %d + tables/scratch/objects %d), budget is %d"
                              % (self.name, self.ram_bytes, self.arena_size,
                                 self.ram_bytes - self.arena_size, budget))
        if arena is not None and len(arena) < self.arena_size:
            raise BudgetError("arena of %d bytes is smaller than arena_size %d" % (len(arena), self.arena_size))
        try:
            self.arena = bytearray(self.arena_size) if arena is None else arena
            self._xs = [0] * xs_len
            self._acc = [0] * acc_len
            self._steps = [s for s in (p[0]() for p in plan) if s is not None]
        except MemoryError:
            raise BudgetError("not enough free RAM for model %s: it needs about %d bytes" % (self.name, self.ram_bytes))
        self._in = ti[0]
        self._out = to[0]

    # -- helpers
    def _buf(self, t):
        """(is_constant, byte offset, dims, zero point) of tensor t."""
        off, dims, zp, const = self._t[t]
        return const, off, dims, zp

    def _src(self, const):
        """The buffer a tensor lives in (call only after the arena exists)."""
        return self.blob if const else self.arena

    def _out_tensor(self, t, what):
        off, dims, zp, const = self._t[t]
        if const:
            raise BlobError("%s writes tensor %d, which is a constant" % (what, t))
        return off, dims, zp

    def _per_channel(self, mult_off, shift_off, bias_off, per_channel, n):
        """Multipliers, shifts (one per output channel) and bias as compact arrays."""
        blob = self.blob
        mults = array("i", [0] * n)
        shifts = array("b", [0] * n)
        bias = array("i", [0] * n)
        for k in range(n):
            j = k if per_channel else 0
            mults[k] = struct.unpack_from("<i", blob, mult_off + 4 * j)[0]
            shifts[k] = _shift(_S8[blob[shift_off + j]], mult_off)
            bias[k] = struct.unpack_from("<i", blob, bias_off + 4 * k)[0]
        return mults, shifts, bias

    # -- planning: each returns (build() -> (kernel, params) or None, xs_len, acc_len, table_bytes)
    def _plan(self, op, off):
        blob = self.blob
        if op == B.OP_FULLY_CONNECTED:
            return self._plan_fc(off)
        if op == B.OP_CONV_2D or op == B.OP_DEPTHWISE_CONV_2D:
            return self._plan_conv(op, off)
        if op == B.OP_AVERAGE_POOL_2D or op == B.OP_MAX_POOL_2D:
            return self._plan_pool(op, off)
        if op == B.OP_RESHAPE:
            inp, out = B.reshape_fields(blob, off)
            src, ioff, idims, _ = self._buf(inp)
            ooff, odims, _ = self._out_tensor(out, "RESHAPE")
            n = _count(idims)
            if n != _count(odims):
                raise BlobError("RESHAPE at %d: %d elements in, %d out" % (off, n, _count(odims)))
            if not src and ioff == ooff:
                return (lambda: None, 0, 0, 0)
            return (lambda: (self._copy, (self._src(src), ioff, ooff, n)), 0, 0, 0)
        if op == B.OP_LOGISTIC or op == B.OP_TANH:
            inp, out, lut_off = B.lut_fields(blob, off)
            return self._plan_lut(inp, out, B.OP_NAMES[op], lambda: memoryview(blob)[lut_off:lut_off + 256], 0)
        if op == B.OP_QUANTIZE:
            inp, out, m, s = B.quantize_fields(blob, off)
            _shift(s, off)
            zi, zo = self._t[inp][2], self._t[out][2]

            def table():
                lut = bytearray(256)
                for b in range(256):
                    lut[b] = _requant(b - 128 - zi, m, s, zo, -128, 127)
                return lut
            return self._plan_lut(inp, out, "QUANTIZE", table, 256)
        if op == B.OP_SOFTMAX:
            return self._plan_softmax(off)
        if op == B.OP_ADD:
            return self._plan_add(off)
        if op == B.OP_MEAN:
            return self._plan_mean(off)
        raise BlobError("unsupported opcode %d" % op)

    def _plan_lut(self, inp, out, what, make_table, table_bytes):
        src, ioff, idims, _ = self._buf(inp)
        ooff, odims, _ = self._out_tensor(out, what)
        n = _count(idims)
        if n != _count(odims):
            raise BlobError("%s: %d elements in, %d out" % (what, n, _count(odims)))

        def build():
            lut = make_table()
            return (self._lut, (self._src(src), ioff, ooff, n, lut))
        return (build, 0, 0, table_bytes)

    def _plan_fc(self, off):
        (inp, out, lo, hi, pc, n_in, n_out, mo, so, bo, wo) = B.fc_fields(self.blob, off)
        src, ioff, idims, zi = self._buf(inp)
        ooff, odims, zo = self._out_tensor(out, "FULLY_CONNECTED")
        if n_in == 0 or n_out == 0 or _count(idims) % n_in:
            raise BlobError("FULLY_CONNECTED at %d: input of %d elements, n_in %d" % (off, _count(idims), n_in))
        batches = _count(idims) // n_in
        if batches * n_out != _count(odims):
            raise BlobError("FULLY_CONNECTED at %d: output has %d elements, expected %d"
                            % (off, _count(odims), batches * n_out))

        def build():
            mults, shifts, bias = self._per_channel(mo, so, bo, pc, n_out)
            mask = int.from_bytes(b"\x80" * n_in, "little")
            p = (self._src(src), ioff, ooff, lo, hi, n_in, n_out, batches, zi, zo, mults, shifts, bias, wo, mask)
            return (self._fc, p)
        return (build, n_in, 0, 9 * n_out + n_in)

    def _plan_conv(self, op, off):
        f = B.conv_fields(self.blob, self.hdr, off)
        (inp, out, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, pc, dm, oc, mo, so, bo, wo, _) = f
        what = B.OP_NAMES[op]
        src, ioff, idims, zi = self._buf(inp)
        ooff, odims, zo = self._out_tensor(out, what)
        depthwise = op == B.OP_DEPTHWISE_CONV_2D
        if 0 in (sh, sw, dh, dw, kh, kw) or odims[0] != idims[0] or (depthwise and oc != idims[3] * dm):
            raise BlobError("%s at %d: inconsistent strides/kernel/channels" % (what, off))

        def build():
            mults, shifts, bias = self._per_channel(mo, so, bo, pc, oc)
            p = (self._src(src), ioff, idims, ooff, odims, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, dm, zi, zo,
                 mults, shifts, bias, wo)
            if depthwise:
                return (self._depthwise, p)
            return (self._conv, p)
        return (build, _count(idims), oc if depthwise else 0, 9 * oc)

    def _plan_pool(self, op, off):
        inp, out, lo, hi, sh, sw, fh, fw, pt, pl = B.pool_fields(self.blob, off)
        src, ioff, idims, _ = self._buf(inp)
        ooff, odims, _ = self._out_tensor(out, B.OP_NAMES[op])
        if 0 in (sh, sw, fh, fw) or odims[0] != idims[0] or odims[3] != idims[3]:
            raise BlobError("%s at %d: inconsistent strides/filter/channels" % (B.OP_NAMES[op], off))
        is_max = op == B.OP_MAX_POOL_2D

        def build():
            p = (self._src(src), ioff, idims, ooff, odims, lo, hi, sh, sw, fh, fw, pt, pl, is_max)
            return (self._pool, p)
        return (build, 0, 0, 0)

    def _plan_softmax(self, off):
        inp, out, lut_off = B.softmax_fields(self.blob, off)
        src, ioff, idims, _ = self._buf(inp)
        ooff, odims, _ = self._out_tensor(out, "SOFTMAX")
        if _count(idims) != _count(odims) or idims[3] == 0:
            raise BlobError("SOFTMAX at %d: shapes differ" % off)

        def build():
            lut = array("i", struct.unpack_from("<256i", self.blob, lut_off))
            p = (self._src(src), ioff, ooff, _count(idims) // idims[3], idims[3], lut)
            return (self._softmax, p)
        return (build, 0, idims[3], 1536)  # int32 exp table; 1.5 KB measured in the heap

    def _plan_add(self, off):
        (in1, in2, out, lo, hi, ls, m1, s1, m2, s2, mo, so) = B.add_fields(self.blob, off)
        for sh in (s1, s2, so):
            _shift(sh, off)
        b1, o1, d1, z1 = self._buf(in1)
        b2, o2, d2, z2 = self._buf(in2)
        ooff, odims, zo = self._out_tensor(out, "ADD")
        for k in range(4):
            for d in (d1[k], d2[k]):
                if d != odims[k] and d != 1:
                    raise BlobError("ADD at %d: shapes %r and %r do not broadcast to %r" % (off, d1, d2, odims))
        if not 0 <= ls <= 30:
            raise BlobError("ADD at %d: bad left_shift %d" % (off, ls))

        def build():
            t1 = array("i", [0] * 256)
            t2 = array("i", [0] * 256)
            for b in range(256):
                x = b - 128
                t1[b ^ 0x80] = _mbqm(_wrap32((x - z1) << ls), m1, s1)
                t2[b ^ 0x80] = _mbqm(_wrap32((x - z2) << ls), m2, s2)
            p = (self._src(b1), o1, _bstrides(d1, odims), self._src(b2), o2, _bstrides(d2, odims), ooff, odims,
                 lo, hi, mo, so, zo, t1, t2)
            return (self._add, p)
        return (build, 0, 0, 2048)

    def _plan_mean(self, off):
        inp, out, mask, m, s = B.mean_fields(self.blob, off)
        src, ioff, idims, zi = self._buf(inp)
        ooff, odims, zo = self._out_tensor(out, "MEAN")
        n = 1
        kept = 1
        for k in range(4):
            if mask & (1 << k):
                n *= idims[k]
            else:
                kept *= idims[k]
        if n == 0 or kept != _count(odims) or mask > 15:
            raise BlobError("MEAN at %d: axis mask %d does not match shapes" % (off, mask))
        # Output strides over the kept dimensions (0 for a reduced one).
        strides = [0, 0, 0, 0]
        step = 1
        for k in (3, 2, 1, 0):
            if not mask & (1 << k):
                strides[k] = step
                step *= idims[k]
        m2, s2 = B.mean_multiplier(m, _shift(s, off), n)
        _shift(s2, off)

        def build():
            p = (self._src(src), ioff, idims, ooff, kept, strides, n, zi, zo, m2, s2)
            return (self._mean, p)
        return (build, 0, kept, 0)

    # -- running
    def invoke(self, data) -> bytes:
        """int8 input values (bytes-like, two's complement) -> int8 output values as bytes."""
        if len(data) != self.input_size:
            raise ValueError("input has %d bytes, model %s takes %d" % (len(data), self.name, self.input_size))
        off = self._in
        self.arena[off:off + self.input_size] = data
        for kernel, params in self._steps:
            kernel(params)
        off = self._out
        return bytes(self.arena[off:off + self.output_size])

    # -- kernels
    def _copy(self, p):
        src, ioff, ooff, n = p
        self.arena[ooff:ooff + n] = src[ioff:ioff + n]

    def _lut(self, p):
        src, ioff, ooff, n, lut = p
        ar = self.arena
        for k in range(n):
            ar[ooff + k] = lut[src[ioff + k] ^ 0x80]

    def _fc(self, p):
        (src, ioff, ooff, lo, hi, n_in, n_out, batches, zi, zo, mults, shifts, bias, wo, mask) = p
        xs = self._xs
        ar = self.arena
        mv = self._mv
        S = _S8
        from_bytes = int.from_bytes
        for bt in range(batches):
            base = ioff + bt * n_in
            sx = 0
            for j in range(n_in):
                v = S[src[base + j]] - zi
                xs[j] = v
                sx += v
            corr = sx << 7  # the rows below hold w + 128
            w = wo
            obase = ooff + bt * n_out
            for o in range(n_out):
                if n_in > 16:
                    row = (from_bytes(mv[w:w + n_in], "little") ^ mask).to_bytes(n_in, "little")
                    acc = bias[o] - corr
                    j = 0
                    for u in row:
                        acc += xs[j] * u
                        j += 1
                else:  # a short row is cheaper with a signed lookup per weight
                    acc = bias[o]
                    j = 0
                    for u in mv[w:w + n_in]:
                        acc += xs[j] * S[u]
                        j += 1
                w += n_in
                ar[obase + o] = _requant(acc, mults[o], shifts[o], zo, lo, hi)

    def _centered(self, src, ioff, n, zi):
        """The op's input as signed ints minus its zero point, in the preallocated list."""
        xs = self._xs
        S = _S8
        for k in range(n):
            xs[k] = S[src[ioff + k]] - zi
        return xs

    def _conv(self, p):
        (src, ioff, idims, ooff, odims, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, _, zi, zo,
         mults, shifts, bias, wo) = p
        nb, ih, iw, ic = idims
        _, oh, ow, oc = odims
        xs = self._centered(src, ioff, nb * ih * iw * ic, zi)
        S = _S8
        ar = self.arena
        mv = self._mv
        wstride = kh * kw * ic
        o = ooff
        for b in range(nb):
            for oy in range(oh):
                y0 = oy * sh - pt
                for ox in range(ow):
                    x0 = ox * sw - pl
                    # In-bounds taps as (input index, weight offset in a filter, length) runs.
                    runs = []
                    for fy in range(kh):
                        iy = y0 + dh * fy
                        if iy < 0 or iy >= ih:
                            continue
                        row = (b * ih + iy) * iw
                        if dw == 1:
                            fx0 = -x0 if x0 < 0 else 0
                            fx1 = iw - x0 if iw - x0 < kw else kw
                            if fx1 > fx0:
                                runs.append(((row + x0 + fx0) * ic, (fy * kw + fx0) * ic, (fx1 - fx0) * ic))
                        else:
                            for fx in range(kw):
                                ix = x0 + dw * fx
                                if 0 <= ix < iw:
                                    runs.append(((row + ix) * ic, (fy * kw + fx) * ic, ic))
                    w = wo
                    for c in range(oc):
                        acc = 0
                        for xi, wi, n in runs:
                            wi += w
                            for u in mv[wi:wi + n]:
                                acc += xs[xi] * S[u]
                                xi += 1
                        ar[o] = _requant(acc + bias[c], mults[c], shifts[c], zo, lo, hi)
                        o += 1
                        w += wstride

    def _depthwise(self, p):
        (src, ioff, idims, ooff, odims, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, dm, zi, zo,
         mults, shifts, bias, wo) = p
        nb, ih, iw, ic = idims
        _, oh, ow, oc = odims
        xs = self._centered(src, ioff, nb * ih * iw * ic, zi)
        acc = self._acc
        S = _S8
        ar = self.arena
        mv = self._mv
        o = ooff
        for b in range(nb):
            for oy in range(oh):
                y0 = oy * sh - pt
                for ox in range(ow):
                    x0 = ox * sw - pl
                    for c in range(oc):
                        acc[c] = bias[c]
                    for fy in range(kh):
                        iy = y0 + dh * fy
                        if iy < 0 or iy >= ih:
                            continue
                        for fx in range(kw):
                            ix = x0 + dw * fx
                            if ix < 0 or ix >= iw:
                                continue
                            xi = ((b * ih + iy) * iw + ix) * ic
                            wi = wo + (fy * kw + fx) * oc
                            if dm == 1:
                                c = 0
                                for u in mv[wi:wi + oc]:
                                    acc[c] += xs[xi + c] * S[u]
                                    c += 1
                            else:
                                for c in range(oc):
                                    acc[c] += xs[xi + c // dm] * S[mv[wi + c]]
                    for c in range(oc):
                        ar[o] = _requant(acc[c], mults[c], shifts[c], zo, lo, hi)
                        o += 1

    def _pool(self, p):
        (src, ioff, idims, ooff, odims, lo, hi, sh, sw, fh, fw, pt, pl, is_max) = p
        nb, ih, iw, ch = idims
        _, oh, ow, _ = odims
        S = _S8
        ar = self.arena
        o = ooff
        for b in range(nb):
            for oy in range(oh):
                y0 = oy * sh - pt
                fy0 = -y0 if y0 < 0 else 0
                fy1 = ih - y0 if ih - y0 < fh else fh
                for ox in range(ow):
                    x0 = ox * sw - pl
                    fx0 = -x0 if x0 < 0 else 0
                    fx1 = iw - x0 if iw - x0 < fw else fw
                    count = (fy1 - fy0) * (fx1 - fx0)
                    for c in range(ch):
                        acc = -128 if is_max else 0
                        for fy in range(fy0, fy1):
                            k = ioff + (((b * ih + y0 + fy) * iw + x0 + fx0) * ch) + c
                            for _ in range(fx1 - fx0):
                                v = S[src[k]]
                                if is_max:
                                    if v > acc:
                                        acc = v
                                else:
                                    acc += v
                                k += ch
                        if not is_max:
                            if count <= 0:
                                raise BlobError("AVERAGE_POOL_2D: a window has no input taps")
                            if acc > 0:
                                acc = (acc + count // 2) // count
                            else:
                                acc = -((count // 2 - acc) // count)
                        ar[o] = (lo if acc < lo else hi if acc > hi else acc) & 0xFF
                        o += 1

    def _softmax(self, p):
        src, ioff, ooff, rows, depth, lut = p
        S = _S8
        e = self._acc
        ar = self.arena
        for r in range(rows):
            base = ioff + r * depth
            mx = -128
            for c in range(depth):
                v = S[src[base + c]]
                if v > mx:
                    mx = v
            total = 0
            for c in range(depth):
                x = lut[mx - S[src[base + c]]]
                e[c] = x
                total += _rdbpot(x, 12)
            lz = _clz32(total)
            scale = _one_over_one_plus_x(_wrap32((total << lz) - (1 << 31)))
            exponent = 12 - lz + 23
            obase = ooff + r * depth
            for c in range(depth):
                y = _rdbpot(_srdhm(scale, e[c]), exponent) - 128
                ar[obase + c] = (-128 if y < -128 else 127 if y > 127 else y) & 0xFF

    def _add(self, p):
        (b1, o1, st1, b2, o2, st2, ooff, odims, lo, hi, mo, so, zo, t1, t2) = p
        n, h, w, c = odims
        ar = self.arena
        o = ooff
        for i in range(n):
            for j in range(h):
                for k in range(w):
                    a1 = o1 + i * st1[0] + j * st1[1] + k * st1[2]
                    a2 = o2 + i * st2[0] + j * st2[1] + k * st2[2]
                    for _ in range(c):
                        ar[o] = _requant(t1[b1[a1]] + t2[b2[a2]], mo, so, zo, lo, hi)
                        o += 1
                        a1 += st1[3]
                        a2 += st2[3]

    def _mean(self, p):
        (src, ioff, idims, ooff, kept, strides, n, zi, zo, m, s) = p
        acc = self._acc
        S = _S8
        for k in range(kept):
            acc[k] = 0
        d0, d1, d2, d3 = idims
        s0, s1, s2, s3 = strides
        k = ioff
        for i in range(d0):
            for j in range(d1):
                for l in range(d2):
                    a = i * s0 + j * s1 + l * s2
                    for _ in range(d3):
                        acc[a] += S[src[k]]
                        k += 1
                        a += s3
        ar = self.arena
        zn = zi * n
        for k in range(kept):
            ar[ooff + k] = _requant(acc[k] - zn, m, s, zo, -128, 127)


def _count(dims) -> int:
    return dims[0] * dims[1] * dims[2] * dims[3]


def _shift(s: int, where: int) -> int:
    """A requantization shift, refused outside TFLM's int32 range."""
    if s < -31 or s > 31:
        raise BlobError("shift %d out of range -31..31 (record near offset %d)" % (s, where))
    return s


def _bstrides(dims, odims):
    """NHWC element strides of a tensor read with broadcasting to odims (0 where a dim of 1 repeats)."""
    st = [0, 0, 0, 0]
    step = 1
    for k in (3, 2, 1, 0):
        st[k] = 0 if (dims[k] == 1 and odims[k] != 1) else step
        step *= dims[k]
    return st
