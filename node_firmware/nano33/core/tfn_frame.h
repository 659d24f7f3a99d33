/* Serial line frames (docs/protocol.md "Serial frames"):
 * "TF1 <kind> <base64 payload> <crc32 hex>\n", crc32 over "<kind> " + payload. */
#ifndef TFN_FRAME_H
#define TFN_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TFN_MAX_LINE 8192    /* contract MAX_SERIAL_LINE, newline included */
#define TFN_MAX_PAYLOAD 6112 /* largest payload whose frame still fits one line */

typedef enum {
    TFN_FRAME_OK = 0,
    TFN_FRAME_MALFORMED, /* not "TF1 ", wrong field count, truncated, bad base64 */
    TFN_FRAME_KIND,      /* unknown message kind */
    TFN_FRAME_CRC,       /* crc32 does not match */
    TFN_FRAME_OVERSIZE   /* line or payload beyond the limits */
} tfn_frame_status;

/* Known kinds (contract KINDS); NULL if `kind` (len bytes) is not one of them. */
const char *tfn_frame_kind(const char *kind, size_t len);

/* Writes the full line (with '\n' and a NUL after it); *out_len excludes the NUL. */
tfn_frame_status tfn_frame_encode(const char *kind, const uint8_t *payload, size_t len,
                                  char *out, size_t cap, size_t *out_len);

/* Decodes one line (trailing "\r\n" allowed). *kind points at a static kind name. */
tfn_frame_status tfn_frame_decode(const char *line, size_t len, const char **kind,
                                  uint8_t *payload, size_t cap, size_t *payload_len);

/* Splits a byte stream into lines; a line longer than TFN_MAX_LINE is dropped whole. */
typedef struct {
    char buf[TFN_MAX_LINE + 1];
    size_t len;
    int overflow;
} tfn_line_reader;

void tfn_line_reader_init(tfn_line_reader *r);
/* Feeds one byte. Returns 1 with line and len set when a line ends, -1 when an
 * oversize line ends (dropped), else 0. The line stays valid until the next call. */
int tfn_line_reader_push(tfn_line_reader *r, uint8_t byte, const char **line, size_t *len);

#endif
