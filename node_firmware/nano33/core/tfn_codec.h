/* crc32 (zlib) and strict base64: the byte codecs of the wire contract. */
#ifndef TFN_CODEC_H
#define TFN_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* zlib-compatible crc32; start with crc = 0, feed pieces by passing the last result. */
uint32_t tfn_crc32(uint32_t crc, const void *data, size_t len);

/* Standard alphabet with '=' padding. Returns the text length, or 0 when `cap`
 * (which must also hold a terminating NUL) is too small; "" for len 0. */
size_t tfn_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Strict decode: length a multiple of 4, alphabet only, padding only at the end.
 * Returns 0 and sets *out_len, or -1 on bad input or when `cap` is too small. */
int tfn_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
