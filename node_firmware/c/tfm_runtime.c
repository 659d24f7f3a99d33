/* TinyFleet portable int8 runtime (see tfm_runtime.h, docs/model-blob.md).
 * Integer math follows TFLM's reference kernels with double rounding.
 * Size matters more than speed here: FULLY_CONNECTED, CONV_2D,
 * DEPTHWISE_CONV_2D and both poolings share one sliding-window kernel, and
 * every record is decoded by one function that both tfm_init (to validate)
 * and tfm_invoke (to run) use. */
#include "tfm_runtime.h"
#include "tfm_kernels.h"

#include <string.h>

enum {
    OP_ADD = 0, OP_AVG = 1, OP_CONV = 3, OP_DW = 4, OP_FC = 9, OP_LOGISTIC = 14,
    OP_MAX = 17, OP_RESHAPE = 22, OP_SOFTMAX = 25, OP_TANH = 28, OP_MEAN = 40,
    OP_QUANTIZE = 114
};

#define LIMIT 0x40000u /* offsets are u16 * 4: blob and arena <= 256 KiB */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static int32_t rd32(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    return (int32_t)(rd16(p) | rd16(p + 2) << 16);
#endif
}

static uint32_t pad4(uint32_t n) { return (n + 3u) & ~3u; }

/* ---- tensors ---- */

static const uint8_t *trec(const tfm_model *m, uint32_t i) { return m->tensors + 12u * i; }
static uint32_t tdim(const tfm_model *m, uint32_t i, int d) { return rd16(trec(m, i) + 2 + 2 * d); }
static int32_t tzp(const tfm_model *m, uint32_t i) { return (int8_t)trec(m, i)[10]; }

static uint32_t tcount(const tfm_model *m, uint32_t i)
{
    uint32_t n = 1;
    int d;
    for (d = 0; d < 4; d++) {
        n *= tdim(m, i, d);
        if (n > LIMIT) return LIMIT + 1; /* no overflow, always out of bounds */
    }
    return n;
}

static int8_t *tdata(const tfm_model *m, uint32_t i)
{
    const uint8_t *t = trec(m, i);
    uint8_t *base = (t[11] & 1) ? (uint8_t *)(uintptr_t)m->blob : m->arena;
    return (int8_t *)(base + 4u * rd16(t));
}

/* ---- op records ---- */

typedef struct {
    const uint8_t *r;  /* the record */
    uint64_t need;     /* bytes the record must hold (64-bit: no overflow) */
    uint32_t in, in2, out;
    int32_t lo, hi;
    /* window geometry (FC, convolutions, pools) */
    uint32_t n, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dw, pt, pl, dm, pc;
    const uint8_t *mult, *shift, *bias, *w;
} op_t;

/* Fills o from record r, reading its fixed fields from f (r itself, or a
 * zero-padded copy while tfm_init does not yet know they are all there);
 * returns TFM_OK or TFM_ERR_OPCODE. Geometry that depends on tensors is only
 * meaningful once op_ok accepted it. */
static tfm_status decode(const tfm_model *m, const uint8_t *r, const uint8_t *f, op_t *o)
{
    uint32_t nm;
    memset(o, 0, sizeof *o);
    o->r = r;
    o->in = rd16(f + 4);
    o->out = rd16(f + 6);
    o->kh = o->kw = o->sh = o->sw = o->dh = o->dw = 1;
    switch (f[0]) {
    case OP_FC:
        o->lo = (int8_t)f[8];
        o->hi = (int8_t)f[9];
        o->pc = f[10];
        o->ic = rd16(f + 12);
        o->oc = rd16(f + 14);
        o->need = 16;
        o->n = o->ih = o->oh = 1;
        if (o->in < m->n_tensors && o->ic) o->iw = o->ow = tcount(m, o->in) / o->ic;
        break;
    case OP_CONV:
    case OP_DW:
        o->dh = f[12];
        o->dw = f[13];
        o->kh = rd16(f + 16);
        o->kw = rd16(f + 18);
        o->pc = f[20];
        o->dm = f[21];
        o->need = 24;
        /* fall through */
    case OP_AVG:
    case OP_MAX:
        o->lo = (int8_t)f[8];
        o->hi = (int8_t)f[9];
        o->sh = f[10];
        o->sw = f[11];
        o->pt = f[14];
        o->pl = f[15];
        if (f[0] == OP_AVG || f[0] == OP_MAX) {
            o->kh = f[12];
            o->kw = f[13];
            o->need = 16;
        }
        if (o->in < m->n_tensors && o->out < m->n_tensors) {
            o->n = tdim(m, o->in, 0);
            o->ih = tdim(m, o->in, 1);
            o->iw = tdim(m, o->in, 2);
            o->ic = tdim(m, o->in, 3);
            o->oh = tdim(m, o->out, 1);
            o->ow = tdim(m, o->out, 2);
            o->oc = tdim(m, o->out, 3);
        }
        break;
    case OP_ADD:
        o->in2 = o->out;
        o->out = rd16(f + 8);
        o->lo = (int8_t)f[10];
        o->hi = (int8_t)f[11];
        o->need = 40;
        return TFM_OK;
    case OP_RESHAPE: o->need = 8; return TFM_OK;
    case OP_QUANTIZE: o->need = 16; return TFM_OK;
    case OP_MEAN: o->need = 20; return TFM_OK;
    case OP_LOGISTIC:
    case OP_TANH: o->need = 8 + 256; return TFM_OK;
    case OP_SOFTMAX: o->need = 8 + 1024; return TFM_OK;
    default: return TFM_ERR_OPCODE;
    }
    if (f[0] == OP_AVG || f[0] == OP_MAX) return TFM_OK;
    /* multipliers, shifts, bias, weights */
    nm = o->pc ? o->oc : 1;
    o->mult = r + o->need;
    o->shift = o->mult + 4 * nm;
    o->bias = o->shift + pad4(nm);
    o->w = o->bias + 4 * o->oc;
    o->need = (uint64_t)(o->w - r) + (uint64_t)o->kh * o->kw * o->oc * (f[0] == OP_DW ? 1 : o->ic);
    return TFM_OK;
}

/* Every check that keeps tfm_invoke inside the blob and the arena. */
static int op_ok(const tfm_model *m, const op_t *o, uint32_t rsize)
{
    uint32_t ni, no, op = o->r[0];
    if (o->in >= m->n_tensors || o->out >= m->n_tensors || o->in2 >= m->n_tensors) return 0;
    if (trec(m, o->out)[11] & 1) return 0; /* never write into the blob */
    if (o->need > rsize) return 0;
    ni = tcount(m, o->in);
    no = tcount(m, o->out);
    switch (op) {
    case OP_FC:
    case OP_CONV:
    case OP_DW:
    case OP_AVG:
    case OP_MAX:
        if (ni != o->n * o->ih * o->iw * o->ic || no != o->n * o->oh * o->ow * o->oc) return 0;
        if (op == OP_DW) return o->oc == o->ic * o->dm;
        return op == OP_AVG || op == OP_MAX ? o->oc == o->ic : 1;
    case OP_ADD: {
        int d;
        for (d = 0; d < 4; d++) {
            uint32_t od = tdim(m, o->out, d), a = tdim(m, o->in, d), b = tdim(m, o->in2, d);
            if ((a != od && a != 1) || (b != od && b != 1)) return 0;
        }
        return 1;
    }
    case OP_MEAN: {
        uint32_t kept = 1;
        int d;
        for (d = 0; d < 4; d++)
            if (!(o->r[8] >> d & 1)) kept *= tdim(m, o->in, d);
        return kept == no;
    }
    case OP_SOFTMAX:
        return ni == no && tdim(m, o->in, 3) != 0;
    default: /* RESHAPE, QUANTIZE, LOGISTIC, TANH */
        return ni == no;
    }
}

/* Sliding window shared by FULLY_CONNECTED (a 1x1 conv over batches),
 * CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D and MAX_POOL_2D. */
static void window(const tfm_model *m, const op_t *o)
{
    const int8_t *x = tdata(m, o->in);
    int8_t *y = tdata(m, o->out);
    const int8_t *w = (const int8_t *)o->w;
    int32_t in_off = -tzp(m, o->in), out_zp = tzp(m, o->out);
    uint32_t b, oy, ox, c, ky, kx, i, op = o->r[0];

    for (b = 0; b < o->n; b++)
        for (oy = 0; oy < o->oh; oy++)
            for (ox = 0; ox < o->ow; ox++)
                for (c = 0; c < o->oc; c++) {
                    int32_t acc = op == OP_MAX ? -128 : 0, cnt = 0, v;
                    for (ky = 0; ky < o->kh; ky++) {
                        int32_t iy = (int32_t)(oy * o->sh + ky * o->dh) - (int32_t)o->pt;
                        if (iy < 0 || iy >= (int32_t)o->ih) continue;
                        for (kx = 0; kx < o->kw; kx++) {
                            int32_t ix = (int32_t)(ox * o->sw + kx * o->dw) - (int32_t)o->pl;
                            const int8_t *xp;
                            if (ix < 0 || ix >= (int32_t)o->iw) continue;
                            xp = x + ((b * o->ih + (uint32_t)iy) * o->iw + (uint32_t)ix) * o->ic;
                            cnt++;
                            if (op == OP_DW) {
                                acc += (xp[c / o->dm] + in_off) * w[(ky * o->kw + kx) * o->oc + c];
                            } else if (op == OP_AVG) {
                                acc += xp[c];
                            } else if (op == OP_MAX) {
                                if (xp[c] > acc) acc = xp[c];
                            } else {
                                const int8_t *wp = w + ((c * o->kh + ky) * o->kw + kx) * o->ic;
                                for (i = 0; i < o->ic; i++) acc += (xp[i] + in_off) * wp[i];
                            }
                        }
                    }
                    if (op == OP_AVG) {
                        v = cnt == 0 ? 0 : acc > 0 ? (acc + cnt / 2) / cnt : (acc - cnt / 2) / cnt;
                    } else if (op == OP_MAX) {
                        v = acc;
                    } else {
                        uint32_t k = o->pc ? c : 0;
                        acc += rd32(o->bias + 4 * c);
                        v = tfm_mbqm(acc, rd32(o->mult + 4 * k), (int8_t)o->shift[k]) + out_zp;
                    }
                    y[((b * o->oh + oy) * o->ow + ox) * o->oc + c] = (int8_t)tfm_clamp(v, o->lo, o->hi);
                }
}

/* Advances a 4-D row-major index; returns 0 after the last one. */
static int next4(uint32_t *idx, const uint32_t *lim)
{
    int d;
    for (d = 3; d >= 0; d--) {
        if (++idx[d] < lim[d]) return 1;
        idx[d] = 0;
    }
    return 0;
}

static uint32_t flat4(const uint32_t *idx, const uint32_t *dims)
{
    return ((idx[0] * dims[1] + idx[1]) * dims[2] + idx[2]) * dims[3] + idx[3];
}

static void dims4(const tfm_model *m, uint32_t t, uint32_t *d)
{
    int i;
    for (i = 0; i < 4; i++) d[i] = tdim(m, t, i);
}

static void add(const tfm_model *m, const op_t *o)
{
    const uint8_t *r = o->r;
    const int8_t *x1 = tdata(m, o->in), *x2 = tdata(m, o->in2);
    int8_t *y = tdata(m, o->out);
    uint32_t od[4], d1[4], d2[4], i1[4], i2[4], idx[4] = {0, 0, 0, 0};
    int32_t ls = rd32(r + 12), zp1 = tzp(m, o->in), zp2 = tzp(m, o->in2), zpo = tzp(m, o->out);
    int d;
    dims4(m, o->out, od);
    dims4(m, o->in, d1);
    dims4(m, o->in2, d2);
    if (ls < 0 || ls > 31) ls = 0;
    if (!tcount(m, o->out)) return;
    do {
        int32_t a, bb;
        for (d = 0; d < 4; d++) {
            i1[d] = d1[d] == 1 ? 0 : idx[d];
            i2[d] = d2[d] == 1 ? 0 : idx[d];
        }
        a = tfm_mbqm((int32_t)((uint32_t)(x1[flat4(i1, d1)] - zp1) << ls), rd32(r + 16), rd32(r + 20));
        bb = tfm_mbqm((int32_t)((uint32_t)(x2[flat4(i2, d2)] - zp2) << ls), rd32(r + 24), rd32(r + 28));
        y[flat4(idx, od)] = (int8_t)tfm_clamp(tfm_mbqm(a + bb, rd32(r + 32), rd32(r + 36)) + zpo, o->lo, o->hi);
    } while (next4(idx, od));
}

static uint32_t udiv64(uint64_t num, uint32_t den) /* avoids libgcc's 64-bit division */
{
    uint64_t q = 0, rem = 0;
    int i;
    for (i = 63; i >= 0; i--) {
        rem = rem << 1 | (num >> i & 1);
        if (rem >= den) { rem -= den; q |= (uint64_t)1 << i; }
    }
    return (uint32_t)q;
}

/* MEAN as TFLM's QuantizedMeanOrSum: raw int8 sums, 1/n folded into the multiplier. */
static void mean(const tfm_model *m, const op_t *o)
{
    const int8_t *x = tdata(m, o->in);
    int8_t *y = tdata(m, o->out);
    uint32_t dims[4], kept[4], red[4], k[4] = {0, 0, 0, 0}, n = 1;
    int32_t mult = rd32(o->r + 12), shift = rd32(o->r + 16), zpi = tzp(m, o->in), s;
    int d;
    dims4(m, o->in, dims);
    for (d = 0; d < 4; d++) {
        int reduced = o->r[8] >> d & 1;
        kept[d] = reduced ? 1 : dims[d];
        red[d] = reduced ? dims[d] : 1;
        n *= red[d];
    }
    if (!tcount(m, o->in) || mult < 0) return;
    s = 31 - tfm_clz(n);
    if (s > 31 + shift) s = 31 + shift;
    if (s < 0) s = 0;
    mult = (int32_t)udiv64((uint64_t)(uint32_t)mult << s, n);
    shift -= s;
    do {
        uint32_t j[4] = {0, 0, 0, 0}, idx[4], sum = 0;
        do {
            for (d = 0; d < 4; d++) idx[d] = k[d] + j[d];
            sum += (uint32_t)(int32_t)x[flat4(idx, dims)];
        } while (next4(j, red));
        sum -= (uint32_t)zpi * n;
        *y++ = (int8_t)tfm_clamp(tfm_mbqm((int32_t)sum, mult, shift) + tzp(m, o->out), -128, 127);
    } while (next4(k, kept));
}

static void softmax(const tfm_model *m, const op_t *o)
{
    const int8_t *x = tdata(m, o->in);
    int8_t *y = tdata(m, o->out);
    const uint8_t *lut = o->r + 8;
    uint32_t depth = tdim(m, o->in, 3), rows = tcount(m, o->in) / depth, row, c;
    for (row = 0; row < rows; row++, x += depth, y += depth) {
        int32_t mx = -128, sum = 0, scale;
        int lz;
        for (c = 0; c < depth; c++)
            if (x[c] > mx) mx = x[c];
        for (c = 0; c < depth; c++) sum += tfm_rdbpot(rd32(lut + 4 * (uint32_t)(mx - x[c])), 12);
        lz = tfm_clz((uint32_t)sum);
        scale = tfm_one_over_one_plus_x((int32_t)(((uint32_t)sum << (lz & 31)) - 0x80000000u));
        for (c = 0; c < depth; c++) {
            int32_t e = rd32(lut + 4 * (uint32_t)(mx - x[c]));
            y[c] = (int8_t)tfm_clamp(tfm_rdbpot(tfm_srdhm(scale, e), 12 - lz + 23) - 128, -128, 127);
        }
    }
}

static void run(const tfm_model *m, const op_t *o)
{
    const uint8_t *r = o->r;
    const int8_t *x = tdata(m, o->in);
    int8_t *y = tdata(m, o->out);
    uint32_t i, n = tcount(m, o->in);
    switch (r[0]) {
    case OP_ADD: add(m, o); break;
    case OP_MEAN: mean(m, o); break;
    case OP_SOFTMAX: softmax(m, o); break;
    case OP_RESHAPE:
        if (x != y) memmove(y, x, n);
        break;
    case OP_LOGISTIC:
    case OP_TANH:
        for (i = 0; i < n; i++) y[i] = (int8_t)r[8 + x[i] + 128];
        break;
    case OP_QUANTIZE:
        for (i = 0; i < n; i++)
            y[i] = (int8_t)tfm_clamp(tfm_mbqm(x[i] - tzp(m, o->in), rd32(r + 8), rd32(r + 12)) + tzp(m, o->out),
                                 -128, 127);
        break;
    default: window(m, o);
    }
}

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    int k;
    while (n--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t tfm_arena_size(const uint8_t *blob, size_t blob_len)
{
    return blob && blob_len >= 28 ? (uint32_t)rd32(blob + 24) : 0;
}

static tfm_status check(tfm_model *m, const uint8_t *blob, size_t blob_len, uint8_t *arena,
                        size_t arena_len)
{
    uint32_t size, hsize, i, pos;
    if (!m) return TFM_ERR_ARG;
    memset(m, 0, sizeof *m);
    m->err_opcode = m->err_op = -1;
    if (!blob || (!arena && arena_len)) return TFM_ERR_ARG;
    if (blob_len < 8 || rd32(blob) != 0x424D4654) return TFM_ERR_MAGIC; /* "TFMB" */
    if (blob[4] != TFM_FORMAT_VERSION) return TFM_ERR_VERSION;
    if (blob_len < 44) return TFM_ERR_TRUNCATED;
    size = (uint32_t)rd32(blob + 8);
    hsize = rd16(blob + 6);
    if (blob_len < size) return TFM_ERR_TRUNCATED;
    if (size < 44 || size > LIMIT || hsize < 44 || hsize > size || (hsize & 3)) return TFM_ERR_BOUNDS;
    if (crc32(blob + 16, size - 16) != (uint32_t)rd32(blob + 12)) return TFM_ERR_CRC;
    m->blob = blob;
    m->blob_size = size;
    m->arena = arena;
    m->arena_size = (uint32_t)rd32(blob + 24);
    m->n_tensors = (uint16_t)rd16(blob + 20);
    m->n_ops = (uint16_t)rd16(blob + 22);
    m->input = (uint16_t)rd16(blob + 28);
    m->output = (uint16_t)rd16(blob + 30);
    m->tensors = blob + hsize;
    pos = hsize + 12u * m->n_tensors;
    m->ops = blob + pos;
    if (pos > size || m->arena_size > LIMIT || m->input >= m->n_tensors ||
        m->output >= m->n_tensors || (trec(m, m->input)[11] & 1))
        return TFM_ERR_BOUNDS;
    for (i = 0; i < m->n_tensors; i++) {
        const uint8_t *t = trec(m, i);
        uint32_t end = 4u * rd16(t) + tcount(m, i);
        if (end > ((t[11] & 1) ? size : m->arena_size)) return TFM_ERR_BOUNDS;
    }
    for (i = 0; i < m->n_ops; i++) {
        op_t o;
        uint8_t fixed[24];
        uint32_t rsize, k;
        m->err_op = (int16_t)i;
        if (pos + 4 > size) return TFM_ERR_TRUNCATED;
        rsize = rd16(blob + pos + 2);
        if (pos + rsize > size) return TFM_ERR_TRUNCATED;
        if (rsize < 8 || (rsize & 3)) return TFM_ERR_BOUNDS;
        for (k = 0; k < sizeof fixed; k++) fixed[k] = k < rsize ? blob[pos + k] : 0;
        if (decode(m, blob + pos, fixed, &o) != TFM_OK) {
            m->err_opcode = blob[pos];
            return TFM_ERR_OPCODE;
        }
        if (!op_ok(m, &o, rsize)) return TFM_ERR_BOUNDS;
        pos += rsize;
    }
    m->err_op = -1;
    if (arena_len < m->arena_size) return TFM_ERR_ARENA;
    return TFM_OK;
}

tfm_status tfm_init(tfm_model *m, const uint8_t *blob, size_t blob_len, uint8_t *arena,
                    size_t arena_len)
{
    tfm_status st = check(m, blob, blob_len, arena, arena_len);
    if (st != TFM_OK && m) m->blob = NULL; /* a refused model cannot be invoked */
    return st;
}

tfm_status tfm_invoke(const tfm_model *m)
{
    const uint8_t *r;
    uint32_t i;
    if (!m || !m->blob) return TFM_ERR_ARG;
    for (i = 0, r = m->ops; i < m->n_ops; i++, r += rd16(r + 2)) {
        op_t o;
        decode(m, r, r, &o);
        run(m, &o);
    }
    return TFM_OK;
}

int8_t *tfm_input(const tfm_model *m) { return m && m->blob ? tdata(m, m->input) : NULL; }
const int8_t *tfm_output(const tfm_model *m) { return m && m->blob ? tdata(m, m->output) : NULL; }
size_t tfm_input_size(const tfm_model *m) { return m && m->blob ? tcount(m, m->input) : 0; }
size_t tfm_output_size(const tfm_model *m) { return m && m->blob ? tcount(m, m->output) : 0; }
int32_t tfm_input_zero_point(const tfm_model *m) { return m && m->blob ? tzp(m, m->input) : 0; }
int32_t tfm_output_zero_point(const tfm_model *m) { return m && m->blob ? tzp(m, m->output) : 0; }

const char *tfm_status_str(tfm_status s)
{
    switch (s) {
    case TFM_OK: return "ok";
    case TFM_ERR_ARG: return "bad argument";
    case TFM_ERR_MAGIC: return "bad magic";
    case TFM_ERR_VERSION: return "unsupported format version";
    case TFM_ERR_TRUNCATED: return "truncated blob";
    case TFM_ERR_CRC: return "crc32 mismatch";
    case TFM_ERR_OPCODE: return "unknown opcode";
    case TFM_ERR_BOUNDS: return "out of bounds";
    case TFM_ERR_ARENA: return "arena too small";
    }
    return "unknown status";
}
