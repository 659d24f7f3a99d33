#include "tfn_manifest.h"

#include <string.h>

#include "tfn_codec.h"
#include "tfn_json.h"
#include "tfn_sha256.h"

enum { F_V = 1, F_DEPLOYMENT = 2, F_MODEL = 4, F_VERSION = 8, F_SIZE = 16, F_CHUNK = 32,
       F_SHA = 64, F_MINRT = 128, F_ROLLBACK = 256, F_GOLDEN = 512, F_KEY = 1024, F_HMAC = 2048,
       F_ALL = 4095 };

static int hex_bytes(const char *hex, uint8_t *out, size_t n)
{
    size_t i;
    for (i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        if (i % 2 == 0) out[i / 2] = (uint8_t)(d << 4);
        else out[i / 2] |= (uint8_t)d;
    }
    return hex[2 * n] == '\0' ? 0 : -1;
}

/* [[in_b64, out_b64], ...]: decode into m->golden and hash the text as the signer does. */
static int parse_golden(tfn_jr *r, tfn_manifest *m)
{
    static char text[2 * TFN_GOLDEN_BYTES]; /* one base64 string at a time */
    tfn_sha256_ctx h;
    size_t used = 0;
    int first = 1, more;
    tfn_sha256_init(&h);
    m->n_golden = 0;
    if (tfn_jr_open(r, '[')) return -1;
    while ((more = tfn_jr_more(r, ']', &first)) == 1) {
        int inner_first = 1, j;
        if (m->n_golden >= TFN_MAX_GOLDEN || tfn_jr_open(r, '[')) return -1;
        for (j = 0; j < 2; j++) {
            size_t n, dec;
            if (tfn_jr_more(r, ']', &inner_first) != 1) return -1;
            if (tfn_jr_string(r, text, sizeof text, &n)) return -1;
            tfn_sha256_update(&h, text, n);
            tfn_sha256_update(&h, j == 0 ? "|" : ";", 1);
            if (tfn_b64_decode(text, n, m->golden + used, sizeof m->golden - used, &dec)) return -1;
            m->golden_off[m->n_golden][j] = (uint16_t)used;
            m->golden_len[m->n_golden][j] = (uint16_t)dec;
            used += dec;
        }
        if (tfn_jr_more(r, ']', &inner_first) != 0) return -1;
        m->n_golden++;
    }
    if (more) return -1;
    tfn_sha256_final(&h, m->golden_digest);
    return 0;
}

static int str_field(tfn_jr *r, char *out, size_t cap)
{
    return tfn_jr_peek(r) == TFN_J_STR ? tfn_jr_string(r, out, cap, NULL) : -1;
}

int tfn_manifest_parse(tfn_manifest *m, const char *json, size_t len)
{
    tfn_jr r;
    char key[16];
    int first = 1, more, seen = 0;
    int64_t v = 0;
    memset(m, 0, sizeof *m);
    tfn_jr_init(&r, json, len);
    if (tfn_jr_open(&r, '{')) return -1;
    while ((more = tfn_jr_more(&r, '}', &first)) == 1) {
        int bit, rc;
        if (tfn_jr_key(&r, key, sizeof key)) return -1;
        if (!strcmp(key, "v")) { bit = F_V; rc = tfn_jr_int(&r, &v); }
        else if (!strcmp(key, "deployment")) { bit = F_DEPLOYMENT; rc = str_field(&r, m->deployment, sizeof m->deployment); }
        else if (!strcmp(key, "model")) { bit = F_MODEL; rc = str_field(&r, m->model, sizeof m->model); }
        else if (!strcmp(key, "version")) { bit = F_VERSION; rc = tfn_jr_int(&r, &m->version); }
        else if (!strcmp(key, "size")) { bit = F_SIZE; rc = tfn_jr_int(&r, &m->size); }
        else if (!strcmp(key, "chunk_size")) { bit = F_CHUNK; rc = tfn_jr_int(&r, &m->chunk_size); }
        else if (!strcmp(key, "sha256")) { bit = F_SHA; rc = str_field(&r, m->sha256_hex, sizeof m->sha256_hex); }
        else if (!strcmp(key, "min_runtime")) { bit = F_MINRT; rc = tfn_jr_int(&r, &m->min_runtime); }
        else if (!strcmp(key, "rollback")) { bit = F_ROLLBACK; rc = tfn_jr_bool(&r, &m->rollback); }
        else if (!strcmp(key, "golden")) { bit = F_GOLDEN; rc = parse_golden(&r, m); }
        else if (!strcmp(key, "key")) { bit = F_KEY; rc = str_field(&r, m->key, sizeof m->key); }
        else if (!strcmp(key, "hmac")) { bit = F_HMAC; rc = str_field(&r, m->hmac_hex, sizeof m->hmac_hex); }
        else { bit = 0; rc = tfn_jr_skip(&r); }
        if (rc || (seen & bit)) return -1; /* bad value, or a duplicate key */
        seen |= bit;
    }
    if (more || tfn_jr_done(&r) || seen != F_ALL) return -1;
    if (v != 1 || m->size <= 0 || m->chunk_size <= 0) return -1;
    if (hex_bytes(m->sha256_hex, m->sha256, 32)) return -1;
    return 0;
}

static size_t append(char *out, size_t cap, size_t o, const char *s)
{
    size_t n = strlen(s);
    if (o + n + 1 > cap) return cap + 1; /* sticky overflow */
    memcpy(out + o, s, n + 1);
    return o + n;
}

static void dec(int64_t v, char *buf)
{
    char tmp[24];
    int n = 0, i = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[n++] = (char)('0' + u % 10u); u /= 10u; } while (u);
    if (v < 0) buf[i++] = '-';
    while (n) buf[i++] = tmp[--n];
    buf[i] = '\0';
}

size_t tfn_manifest_signing_bytes(const tfn_manifest *m, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    char num[24], gd[65];
    const int64_t *ints[3];
    size_t o = 0;
    int i;
    for (i = 0; i < 32; i++) {
        gd[2 * i] = hex[m->golden_digest[i] >> 4];
        gd[2 * i + 1] = hex[m->golden_digest[i] & 15];
    }
    gd[64] = '\0';
    ints[0] = &m->version;
    ints[1] = &m->size;
    ints[2] = &m->chunk_size;
    o = append(out, cap, o, "tinyfleet-ota|1|");
    o = append(out, cap, o, m->deployment);
    o = append(out, cap, o, "|");
    o = append(out, cap, o, m->model);
    for (i = 0; i < 3; i++) {
        dec(*ints[i], num);
        o = append(out, cap, o, "|");
        o = append(out, cap, o, num);
    }
    o = append(out, cap, o, "|");
    o = append(out, cap, o, m->sha256_hex);
    dec(m->min_runtime, num);
    o = append(out, cap, o, "|");
    o = append(out, cap, o, num);
    o = append(out, cap, o, m->rollback ? "|rollback|" : "|update|");
    o = append(out, cap, o, m->key);
    o = append(out, cap, o, "|");
    o = append(out, cap, o, gd);
    return o > cap ? 0 : o;
}

int tfn_manifest_verify(const tfn_manifest *m, const uint8_t *key, size_t key_len)
{
    static char text[512];
    uint8_t want[32], got[32];
    size_t n = tfn_manifest_signing_bytes(m, text, sizeof text);
    if (n == 0 || strlen(m->hmac_hex) != 64 || hex_bytes(m->hmac_hex, got, 32)) return -1;
    tfn_hmac_sha256(key, key_len, text, n, want);
    return tfn_ct_compare(want, got, 32) ? -1 : 0;
}
