/* Host-only batch entry for ctypes (node_firmware/c_host.py): one call runs a
 * whole batch, so Python pays the ctypes overhead once. Uses malloc for the
 * arena, which the device runtime itself never does. */
#include <stdlib.h>
#include <string.h>

#include "tfm_runtime.h"

/* Returns a tfm_status; *err_opcode names an unknown opcode; sizes are
 * checked against in_size/out_size (TFM_ERR_ARG on mismatch). */
int tfm_host_run_batch(const uint8_t *blob, size_t blob_len, const int8_t *in, size_t in_size,
                       int8_t *out, size_t out_size, size_t n, size_t arena_len, int *err_opcode)
{
    tfm_model m;
    size_t need = tfm_arena_size(blob, blob_len), i;
    uint8_t *arena;
    tfm_status st;
    if (arena_len == (size_t)-1) arena_len = need;
    arena = (uint8_t *)malloc(arena_len ? arena_len : 1);
    if (!arena) return TFM_ERR_ARENA;
    st = tfm_init(&m, blob, blob_len, arena, arena_len);
    *err_opcode = m.err_opcode;
    if (st == TFM_OK && (tfm_input_size(&m) != in_size || tfm_output_size(&m) != out_size)) st = TFM_ERR_ARG;
    for (i = 0; st == TFM_OK && i < n; i++) {
        memcpy(tfm_input(&m), in + i * in_size, in_size);
        st = tfm_invoke(&m);
        memcpy(out + i * out_size, tfm_output(&m), out_size);
    }
    free(arena);
    return st;
}

const char *tfm_host_status_str(int s) { return tfm_status_str((tfm_status)s); }
