/* The OTA manifest (contract OTA_OFFER): strict parse, HMAC check, golden vectors. */
#ifndef TFN_MANIFEST_H
#define TFN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#ifndef TFN_MAX_GOLDEN
#define TFN_MAX_GOLDEN 8          /* golden vector pairs kept */
#endif
#ifndef TFN_GOLDEN_BYTES
#define TFN_GOLDEN_BYTES 2048     /* decoded golden inputs + outputs */
#endif
#define TFN_STR_MAX 64            /* deployment id and other strings, bytes */

typedef struct {
    char deployment[TFN_STR_MAX + 1];
    char model[TFN_STR_MAX + 1];
    char key[TFN_STR_MAX + 1];
    char sha256_hex[65];
    char hmac_hex[TFN_STR_MAX + 1];
    int64_t version, size, chunk_size, min_runtime;
    int rollback;
    uint8_t sha256[32];
    uint8_t golden_digest[32]; /* sha256 over "in|out;" per pair, as the contract signs it */
    int n_golden;
    uint16_t golden_off[TFN_MAX_GOLDEN][2], golden_len[TFN_MAX_GOLDEN][2];
    uint8_t golden[TFN_GOLDEN_BYTES];
} tfn_manifest;

/* Parses and validates a manifest (every required field, right types, v == 1,
 * size and chunk_size > 0, 64 hex digit sha256, golden pairs). 0 or -1.
 * Fields read before an error stay filled (the FAILED report names them). */
int tfn_manifest_parse(tfn_manifest *m, const char *json, size_t len);

/* manifest_signing_bytes(m) of the contract; returns its length, 0 if cap is too small. */
size_t tfn_manifest_signing_bytes(const tfn_manifest *m, char *out, size_t cap);

/* 0 when the manifest's hmac verifies under `key` (constant time). */
int tfn_manifest_verify(const tfn_manifest *m, const uint8_t *key, size_t key_len);

#endif
