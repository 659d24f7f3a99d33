/* TinyFleet portable int8 runtime: runs a model blob (docs/model-blob.md,
 * format version 1) from RAM or flash, bit-exact with the TFLM interpreter.
 * C99, no heap, no libc beyond <string.h>; the caller owns blob and arena. */
#ifndef TFM_RUNTIME_H
#define TFM_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_FORMAT_VERSION 1

typedef enum {
    TFM_OK = 0,
    TFM_ERR_ARG,       /* NULL pointer, or model not initialised */
    TFM_ERR_MAGIC,     /* not a TFMB blob */
    TFM_ERR_VERSION,   /* unsupported format version */
    TFM_ERR_TRUNCATED, /* blob shorter than blob_size or than a record says */
    TFM_ERR_CRC,       /* crc32 of bytes [16, blob_size) does not match */
    TFM_ERR_OPCODE,    /* unknown opcode: see tfm_model.err_opcode */
    TFM_ERR_BOUNDS,    /* tensor, array or record out of bounds / inconsistent */
    TFM_ERR_ARENA      /* arena smaller than the blob's arena_size */
} tfm_status;

/* Filled by tfm_init; all pointers point into the caller's blob and arena. */
typedef struct {
    const uint8_t *blob;
    const uint8_t *tensors; /* tensor table */
    const uint8_t *ops;     /* first op record */
    uint8_t *arena;
    uint32_t blob_size;
    uint32_t arena_size; /* bytes the model needs */
    uint16_t n_tensors, n_ops, input, output;
    int16_t err_opcode; /* with TFM_ERR_OPCODE: the unknown code, else -1 */
    int16_t err_op;     /* index of the op record that failed, else -1 */
} tfm_model;

/* Validates the blob (magic, version, size, crc32, bounds, opcodes) and binds
 * it to `arena`. The blob must stay valid and 4-byte aligned while in use. */
tfm_status tfm_init(tfm_model *m, const uint8_t *blob, size_t blob_len,
                    uint8_t *arena, size_t arena_len);
tfm_status tfm_invoke(const tfm_model *m);

int8_t *tfm_input(const tfm_model *m);
const int8_t *tfm_output(const tfm_model *m);
size_t tfm_input_size(const tfm_model *m);
size_t tfm_output_size(const tfm_model *m);
int32_t tfm_input_zero_point(const tfm_model *m);
int32_t tfm_output_zero_point(const tfm_model *m);
/* arena_size from the header of an unvalidated blob (0 if too short). */
uint32_t tfm_arena_size(const uint8_t *blob, size_t blob_len);
const char *tfm_status_str(tfm_status s);

#ifdef __cplusplus
}
#endif
#endif
