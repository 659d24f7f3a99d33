/* M4 harness: reads inputs.bin (and model.blob for the blob runtime, unless
 * BLOB_IN_FLASH links the blob in as const data, i.e. into flash) through
 * semihosting, runs one inference per input between mark_begin/mark_end (the
 * instruction-count plugin's markers) and writes outputs.bin.
 * Exit codes: 0 ok, 2 file error, 3 blob too large, 10 + tfm_status. */
#include <stdint.h>
#include <string.h>

#include "semihost.h"

volatile uint32_t mark_state;
__attribute__((noinline)) void mark_begin(void) { mark_state = 1; }
__attribute__((noinline)) void mark_end(void) { mark_state = 2; }

#ifdef CODEGEN
void tfmg_invoke(const int8_t *input, int8_t *output);
static int8_t in_buf[IN_SIZE], out_buf[OUT_SIZE];
#else
#include "tfm_runtime.h"
#ifdef BLOB_IN_FLASH
extern const uint32_t tfm_blob_words[]; /* 4-byte aligned, in .rodata (flash) */
extern const uint32_t tfm_blob_len;
#else
static uint32_t blob[0x40000 / 4];
#endif
static uint8_t arena[0x40000];
static tfm_model model;
#endif

int main(void)
{
    int hin, hout, n, i, insize, outsize;
    int8_t *in;
    const int8_t *out;
#ifdef CODEGEN
    insize = IN_SIZE;
    outsize = OUT_SIZE;
    in = in_buf;
    out = out_buf;
#else
    int st;
#ifdef BLOB_IN_FLASH
    st = tfm_init(&model, (const uint8_t *)tfm_blob_words, tfm_blob_len, arena, sizeof arena);
#else
    int hb = sh_open("model.blob", 1), len;
    if (hb < 0) return 2;
    len = sh_flen(hb);
    if (len < 0 || (size_t)len > sizeof blob) return 3;
    if (sh_read(hb, blob, (size_t)len)) return 2;
    sh_close(hb);
    st = tfm_init(&model, (const uint8_t *)blob, (size_t)len, arena, sizeof arena);
#endif
    if (st != TFM_OK) return 10 + st;
    insize = (int)tfm_input_size(&model);
    outsize = (int)tfm_output_size(&model);
    in = tfm_input(&model);
    out = tfm_output(&model);
#endif
    hin = sh_open("inputs.bin", 1);
    hout = sh_open("outputs.bin", 5);
    if (hin < 0 || hout < 0 || insize <= 0) return 2;
    n = sh_flen(hin) / insize;
    mark_begin(); /* empty pair: the marker overhead, subtracted by the host */
    mark_end();
    for (i = 0; i < n; i++) {
        if (sh_read(hin, in, (size_t)insize)) return 2;
        mark_begin();
#ifdef CODEGEN
        tfmg_invoke(in_buf, out_buf);
#else
        tfm_invoke(&model);
#endif
        mark_end();
        if (sh_write(hout, out, (size_t)outsize)) return 2;
    }
    sh_close(hin);
    sh_close(hout);
    return 0;
}
