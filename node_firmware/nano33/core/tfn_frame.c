#include "tfn_frame.h"

#include <string.h>

#include "tfn_codec.h"

static const char *const kinds[] = {
    "telemetry", "status", "heartbeat", "ota/request", "ota/state", "ota/offer", "ota/chunk",
};

const char *tfn_frame_kind(const char *kind, size_t len)
{
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strlen(kinds[i]) == len && memcmp(kinds[i], kind, len) == 0) return kinds[i];
    return NULL;
}

static uint32_t frame_crc(const char *kind, size_t kind_len, const uint8_t *payload, size_t len)
{
    uint32_t crc = tfn_crc32(0, kind, kind_len);
    crc = tfn_crc32(crc, " ", 1);
    return tfn_crc32(crc, payload, len);
}

tfn_frame_status tfn_frame_encode(const char *kind, const uint8_t *payload, size_t len,
                                  char *out, size_t cap, size_t *out_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t k, n, o, b64;
    uint32_t crc;
    int i;
    if (!tfn_frame_kind(kind, strlen(kind))) return TFN_FRAME_KIND;
    k = strlen(kind);
    n = 4 + k + 1 + (len + 2) / 3 * 4 + 1 + 8 + 1; /* line length with '\n' */
    if (n > TFN_MAX_LINE) return TFN_FRAME_OVERSIZE;
    if (n + 1 > cap) return TFN_FRAME_OVERSIZE;
    memcpy(out, "TF1 ", 4);
    memcpy(out + 4, kind, k);
    o = 4 + k;
    out[o++] = ' ';
    b64 = tfn_b64_encode(payload, len, out + o, cap - o);
    if (b64 == 0 && len) return TFN_FRAME_OVERSIZE;
    o += b64;
    out[o++] = ' ';
    crc = frame_crc(kind, k, payload, len);
    for (i = 7; i >= 0; i--) out[o++] = hex[(crc >> (4 * i)) & 15u];
    out[o++] = '\n';
    out[o] = '\0';
    *out_len = o;
    return TFN_FRAME_OK;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

tfn_frame_status tfn_frame_decode(const char *line, size_t len, const char **kind,
                                  uint8_t *payload, size_t cap, size_t *payload_len)
{
    const char *p, *end, *sp1, *sp2;
    uint32_t crc = 0;
    size_t i;
    if (len > TFN_MAX_LINE) return TFN_FRAME_OVERSIZE;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len < 4 || memcmp(line, "TF1 ", 4) != 0) return TFN_FRAME_MALFORMED;
    p = line + 4;
    end = line + len;
    sp1 = memchr(p, ' ', (size_t)(end - p));
    if (!sp1) return TFN_FRAME_MALFORMED;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (!sp2 || memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1))) return TFN_FRAME_MALFORMED;
    if (end - sp2 - 1 != 8) return TFN_FRAME_MALFORMED;
    for (i = 0; i < 8; i++) {
        int v = hex_value(sp2[1 + i]);
        if (v < 0) return TFN_FRAME_MALFORMED;
        crc = (crc << 4) | (uint32_t)v;
    }
    *kind = tfn_frame_kind(p, (size_t)(sp1 - p));
    if (!*kind) return TFN_FRAME_KIND;
    if ((size_t)(sp2 - sp1 - 1) / 4 * 3 > cap + 2) return TFN_FRAME_OVERSIZE;
    if (tfn_b64_decode(sp1 + 1, (size_t)(sp2 - sp1 - 1), payload, cap, payload_len))
        return TFN_FRAME_MALFORMED;
    if (frame_crc(p, (size_t)(sp1 - p), payload, *payload_len) != crc) return TFN_FRAME_CRC;
    return TFN_FRAME_OK;
}

void tfn_line_reader_init(tfn_line_reader *r)
{
    r->len = 0;
    r->overflow = 0;
}

int tfn_line_reader_push(tfn_line_reader *r, uint8_t byte, const char **line, size_t *len)
{
    if (byte == '\n') {
        int was_overflow = r->overflow;
        r->buf[r->len] = '\0';
        *line = r->buf;
        *len = r->len;
        r->len = 0;
        r->overflow = 0;
        return was_overflow ? -1 : 1;
    }
    if (r->overflow) return 0;
    if (r->len >= TFN_MAX_LINE - 1) { /* no room left for this byte plus '\n' */
        r->overflow = 1;
        r->len = 0;
        return 0;
    }
    r->buf[r->len++] = (char)byte;
    return 0;
}
