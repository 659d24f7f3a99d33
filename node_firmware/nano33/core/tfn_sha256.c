/* Compact SHA-256: one 64-word schedule on the stack, no unrolling (size over speed). */
#include "tfn_sha256.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], s[8], i;
    for (i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof s);
    for (i = 0; i < 64; i++) {
        uint32_t t1 = s[7] + (ROR(s[4], 6) ^ ROR(s[4], 11) ^ ROR(s[4], 25)) +
                      ((s[4] & s[5]) ^ (~s[4] & s[6])) + K[i] + w[i];
        uint32_t t2 = (ROR(s[0], 2) ^ ROR(s[0], 13) ^ ROR(s[0], 22)) +
                      ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        memmove(s + 1, s, 7 * sizeof s[0]);
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (i = 0; i < 8; i++) h[i] += s[i];
}

void tfn_sha256_init(tfn_sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(c->h, iv, sizeof iv);
    c->total = 0;
    c->fill = 0;
}

void tfn_sha256_update(tfn_sha256_ctx *c, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    c->total += len;
    while (len) {
        size_t n = 64 - c->fill;
        if (n > len) n = len;
        memcpy(c->buf + c->fill, p, n);
        c->fill += n;
        p += n;
        len -= n;
        if (c->fill == 64) {
            compress(c->h, c->buf);
            c->fill = 0;
        }
    }
}

void tfn_sha256_final(tfn_sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->total * 8u;
    uint8_t pad = 0x80;
    int i;
    tfn_sha256_update(c, &pad, 1);
    pad = 0;
    while (c->fill != 56) tfn_sha256_update(c, &pad, 1);
    for (i = 7; i >= 0; i--) c->buf[56 + (7 - i)] = (uint8_t)(bits >> (8 * i));
    compress(c->h, c->buf);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void tfn_sha256(const void *data, size_t len, uint8_t out[32])
{
    tfn_sha256_ctx c;
    tfn_sha256_init(&c);
    tfn_sha256_update(&c, data, len);
    tfn_sha256_final(&c, out);
}

void tfn_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                     uint8_t out[32])
{
    uint8_t k[64], inner[32];
    tfn_sha256_ctx c;
    size_t i;
    memset(k, 0, sizeof k);
    if (key_len > 64)
        tfn_sha256(key, key_len, k);
    else if (key_len)
        memcpy(k, key, key_len);
    for (i = 0; i < 64; i++) k[i] ^= 0x36;
    tfn_sha256_init(&c);
    tfn_sha256_update(&c, k, 64);
    tfn_sha256_update(&c, msg, msg_len);
    tfn_sha256_final(&c, inner);
    for (i = 0; i < 64; i++) k[i] ^= 0x36 ^ 0x5c;
    tfn_sha256_init(&c);
    tfn_sha256_update(&c, k, 64);
    tfn_sha256_update(&c, inner, 32);
    tfn_sha256_final(&c, out);
}

int tfn_ct_compare(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint8_t d = 0;
    size_t i;
    for (i = 0; i < len; i++) d |= (uint8_t)(a[i] ^ b[i]);
    return d != 0;
}
