#include "tfn_json.h"

#include <string.h>

/* ------------------------------------------------------------------ writer */

static void put(tfn_jw *w, const char *s, size_t n)
{
    if (w->err || w->len + n + 1 > w->cap) {
        w->err = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void tfn_jw_init(tfn_jw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = cap == 0;
    w->first = 1;
    if (cap) buf[0] = '\0';
}

void tfn_jw_begin(tfn_jw *w, char open)
{
    put(w, &open, 1);
    w->first = 1;
}

void tfn_jw_end(tfn_jw *w, char close)
{
    put(w, &close, 1);
    w->first = 0;
}

void tfn_jw_next(tfn_jw *w)
{
    if (!w->first) put(w, ",", 1);
    w->first = 0;
}

void tfn_jw_key(tfn_jw *w, const char *key)
{
    tfn_jw_next(w);
    tfn_jw_str(w, key);
    put(w, ":", 1);
}

void tfn_jw_str(tfn_jw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2];
            e[0] = '\\';
            e[1] = (char)c;
            put(w, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', 0, 0};
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            put(w, e, 6);
        } else {
            put(w, (const char *)&c, 1);
        }
    }
    put(w, "\"", 1);
}

void tfn_jw_int(tfn_jw *w, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) tmp[sizeof tmp - 1 - n++] = '-';
    put(w, tmp + sizeof tmp - n, (size_t)n);
}

void tfn_jw_float(tfn_jw *w, float v)
{
    /* Fixed-point with enough decimals for 7 significant digits; no printf needed. */
    double x = v;
    uint64_t scale = 1, ip, fp;
    int decimals = 6, i;
    char frac[12];
    if (!(x == x) || x > 1e15 || x < -1e15) { /* NaN or beyond what we print */
        tfn_jw_int(w, 0);
        return;
    }
    if (x < 0) {
        put(w, "-", 1);
        x = -x;
    }
    if (x >= 1.0) {
        double t = x;
        while (t >= 10.0 && decimals > 0) {
            t /= 10.0;
            decimals--;
        }
    } else if (x > 0.0) {
        double t = x;
        while (t < 0.1 && decimals < 10) {
            t *= 10.0;
            decimals++;
        }
    }
    for (i = 0; i < decimals; i++) scale *= 10u;
    ip = (uint64_t)x;
    fp = (uint64_t)((x - (double)ip) * (double)scale + 0.5);
    if (fp >= scale) {
        ip++;
        fp -= scale;
    }
    tfn_jw_int(w, (int64_t)ip);
    if (fp == 0 || decimals == 0) return;
    for (i = decimals - 1; i >= 0; i--) {
        frac[i] = (char)('0' + fp % 10u);
        fp /= 10u;
    }
    while (decimals > 0 && frac[decimals - 1] == '0') decimals--;
    put(w, ".", 1);
    put(w, frac, (size_t)decimals);
}

void tfn_jw_bool(tfn_jw *w, int v) { put(w, v ? "true" : "false", v ? 4 : 5); }

/* ------------------------------------------------------------------ reader */

#define MAX_DEPTH 16

void tfn_jr_init(tfn_jr *r, const char *text, size_t len)
{
    r->p = text;
    r->end = text + len;
    r->depth = 0;
}

static void ws(tfn_jr *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int lit(tfn_jr *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return -1;
    r->p += n;
    return 0;
}

/* Scans a number; returns TFN_J_INT or TFN_J_FLOAT, or TFN_J_ERR. Consumes it. */
static tfn_jtype number(tfn_jr *r, int64_t *v)
{
    int neg = 0, digits = 0, isfloat = 0;
    int64_t acc = 0;
    if (r->p < r->end && *r->p == '-') {
        neg = 1;
        r->p++;
    }
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') return TFN_J_ERR;
    if (*r->p == '0' && r->p + 1 < r->end && r->p[1] >= '0' && r->p[1] <= '9') return TFN_J_ERR;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (++digits <= 18) acc = acc * 10 + (*r->p - '0');
        r->p++;
    }
    if (r->p < r->end && *r->p == '.') {
        isfloat = 1;
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9') return TFN_J_ERR;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        isfloat = 1;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9') return TFN_J_ERR;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
    }
    if (isfloat) return TFN_J_FLOAT;
    if (digits > 18) return TFN_J_FLOAT; /* too big to hold: not an int we accept */
    if (v) *v = neg ? -acc : acc;
    return TFN_J_INT;
}

tfn_jtype tfn_jr_peek(tfn_jr *r)
{
    ws(r);
    if (r->p >= r->end) return TFN_J_ERR;
    switch (*r->p) {
    case '{': return TFN_J_OBJ;
    case '[': return TFN_J_ARR;
    case '"': return TFN_J_STR;
    case 't': return TFN_J_TRUE;
    case 'f': return TFN_J_FALSE;
    case 'n': return TFN_J_NULL;
    default: {
        tfn_jr save = *r;
        tfn_jtype t = number(&save, NULL);
        return t;
    }
    }
}

static int hex4(const char *p, uint32_t *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = (*v << 4) | (uint32_t)d;
    }
    return 0;
}

static int emit(char *out, size_t cap, size_t *o, uint32_t cp)
{
    uint8_t b[4];
    size_t n, i;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
        b[2] = (uint8_t)(0x80 | (cp & 63)); n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)); b[3] = (uint8_t)(0x80 | (cp & 63)); n = 4;
    }
    if (*o + n + 1 > cap) return -1;
    for (i = 0; i < n; i++) out[(*o)++] = (char)b[i];
    return 0;
}

int tfn_jr_string(tfn_jr *r, char *out, size_t cap, size_t *len)
{
    size_t o = 0;
    ws(r);
    if (cap == 0 || r->p >= r->end || *r->p != '"') return -1;
    r->p++;
    for (;;) {
        unsigned char c;
        if (r->p >= r->end) return -1;
        c = (unsigned char)*r->p++;
        if (c == '"') break;
        if (c < 0x20) return -1;
        if (c != '\\') {
            if (o + 2 > cap) return -1;
            out[o++] = (char)c;
            continue;
        }
        if (r->p >= r->end) return -1;
        c = (unsigned char)*r->p++;
        switch (c) {
        case '"': case '\\': case '/': if (emit(out, cap, &o, c)) return -1; break;
        case 'b': if (emit(out, cap, &o, 8)) return -1; break;
        case 'f': if (emit(out, cap, &o, 12)) return -1; break;
        case 'n': if (emit(out, cap, &o, 10)) return -1; break;
        case 'r': if (emit(out, cap, &o, 13)) return -1; break;
        case 't': if (emit(out, cap, &o, 9)) return -1; break;
        case 'u': {
            uint32_t cp, lo;
            if (r->end - r->p < 4 || hex4(r->p, &cp)) return -1;
            r->p += 4;
            if (cp >= 0xDC00 && cp < 0xE000) return -1; /* lone low surrogate */
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4(r->p + 2, &lo) ||
                    lo < 0xDC00 || lo >= 0xE000)
                    return -1;
                r->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (emit(out, cap, &o, cp)) return -1;
            break;
        }
        default: return -1;
        }
    }
    out[o] = '\0';
    if (len) *len = o;
    return 0;
}

int tfn_jr_int(tfn_jr *r, int64_t *v)
{
    ws(r);
    return number(r, v) == TFN_J_INT ? 0 : -1;
}

int tfn_jr_bool(tfn_jr *r, int *v)
{
    ws(r);
    if (lit(r, "true") == 0) { *v = 1; return 0; }
    if (lit(r, "false") == 0) { *v = 0; return 0; }
    return -1;
}

int tfn_jr_open(tfn_jr *r, char open)
{
    ws(r);
    if (r->p >= r->end || *r->p != open || r->depth >= MAX_DEPTH) return -1;
    r->p++;
    r->depth++;
    return 0;
}

int tfn_jr_more(tfn_jr *r, char close, int *first)
{
    ws(r);
    if (r->p >= r->end) return -1;
    if (*r->p == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    if (!*first) {
        if (*r->p != ',') return -1;
        r->p++;
        ws(r);
        if (r->p < r->end && *r->p == close) return -1; /* trailing comma */
    }
    *first = 0;
    return 1;
}

static int skip_string(tfn_jr *r)
{
    ws(r);
    if (r->p >= r->end || *r->p != '"') return -1;
    r->p++;
    while (r->p < r->end && *r->p != '"') {
        if ((unsigned char)*r->p < 0x20) return -1;
        if (*r->p == '\\' && ++r->p >= r->end) return -1;
        r->p++;
    }
    if (r->p >= r->end) return -1;
    r->p++;
    return 0;
}

int tfn_jr_key(tfn_jr *r, char *out, size_t cap)
{
    tfn_jr save = *r;
    if (tfn_jr_string(r, out, cap, NULL)) { /* too long for out (or bad): skip it as "" */
        *r = save;
        if (skip_string(r)) return -1;
        out[0] = '\0';
    }
    ws(r);
    if (r->p >= r->end || *r->p != ':') return -1;
    r->p++;
    return 0;
}

int tfn_jr_skip(tfn_jr *r)
{
    char tmp[64];
    int first = 1, more;
    switch (tfn_jr_peek(r)) {
    case TFN_J_OBJ:
        if (tfn_jr_open(r, '{')) return -1;
        while ((more = tfn_jr_more(r, '}', &first)) == 1)
            if (tfn_jr_key(r, tmp, sizeof tmp) || tfn_jr_skip(r)) return -1;
        return more;
    case TFN_J_ARR:
        if (tfn_jr_open(r, '[')) return -1;
        while ((more = tfn_jr_more(r, ']', &first)) == 1)
            if (tfn_jr_skip(r)) return -1;
        return more;
    case TFN_J_STR: return skip_string(r);
    case TFN_J_INT: case TFN_J_FLOAT: ws(r); return number(r, NULL) == TFN_J_ERR ? -1 : 0;
    case TFN_J_TRUE: ws(r); return lit(r, "true");
    case TFN_J_FALSE: ws(r); return lit(r, "false");
    case TFN_J_NULL: ws(r); return lit(r, "null");
    default: return -1;
    }
}

int tfn_jr_done(tfn_jr *r)
{
    ws(r);
    return r->p != r->end;
}
