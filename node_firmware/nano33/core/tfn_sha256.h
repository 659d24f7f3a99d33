/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104): blob check and manifest signature. */
#ifndef TFN_SHA256_H
#define TFN_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t total;
    uint8_t buf[64];
    size_t fill;
} tfn_sha256_ctx;

void tfn_sha256_init(tfn_sha256_ctx *c);
void tfn_sha256_update(tfn_sha256_ctx *c, const void *data, size_t len);
void tfn_sha256_final(tfn_sha256_ctx *c, uint8_t out[32]);
void tfn_sha256(const void *data, size_t len, uint8_t out[32]);
void tfn_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                     uint8_t out[32]);
/* 0 when equal; the time taken does not depend on where they differ. */
int tfn_ct_compare(const uint8_t *a, const uint8_t *b, size_t len);

#endif
