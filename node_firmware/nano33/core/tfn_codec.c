/* crc32 with a 16-entry table (64 bytes of flash instead of 1 KiB). */
#include "tfn_codec.h"

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t tfn_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t tfn_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t i, o = 0, need = (len + 2) / 3 * 4;
    if (need + 1 > cap) return 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63u];
        out[o++] = b64_alphabet[(v >> 12) & 63u];
        out[o++] = b64_alphabet[(v >> 6) & 63u];
        out[o++] = b64_alphabet[v & 63u];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[(v >> 18) & 63u];
        out[o++] = b64_alphabet[(v >> 12) & 63u];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63u] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int tfn_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t i, o = 0;
    if (len % 4) return -1;
    for (i = 0; i < len; i += 4) {
        int a = b64_value(in[i]), b = b64_value(in[i + 1]);
        int c = b64_value(in[i + 2]), d = b64_value(in[i + 3]);
        int last = i + 4 == len, pad = 0;
        uint32_t v;
        if (a < 0 || b < 0) return -1;
        if (last && in[i + 3] == '=') {
            pad = in[i + 2] == '=' ? 2 : 1;
            if (pad == 1 && c < 0) return -1;
            if (pad == 2) c = 0;
            d = 0;
        } else if (c < 0 || d < 0) {
            return -1;
        }
        if (o + 3 - (size_t)pad > cap) return -1;
        v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) out[o++] = (uint8_t)(v >> 8);
        if (pad < 1) out[o++] = (uint8_t)v;
    }
    *out_len = o;
    return 0;
}
