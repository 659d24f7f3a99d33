/* Test driver: tfm_init + tfm_invoke on every blob file named on the command
 * line, built with -fsanitize=address,undefined by test_c_runtime.py so that
 * any out-of-bounds access on a corrupted blob aborts the run.
 * A refused blob must leave a model that tfm_invoke refuses too.
 * Prints "<ran> <refused>"; exits 1 if a refused model could be invoked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm_runtime.h"

int main(int argc, char **argv)
{
    static uint8_t buf[1 << 20];
    int i, ran = 0, refused = 0;
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t n;
        uint8_t *blob, *arena;
        uint32_t need;
        tfm_model m;
        if (!f) return 2;
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        blob = malloc(n ? n : 1); /* exact size: ASan sees any read past the blob */
        memcpy(blob, buf, n);
        need = tfm_arena_size(blob, n);
        if (need > (1u << 20)) need = 1u << 20;
        arena = malloc(need ? need : 1);
        if (tfm_init(&m, blob, n, arena, need) == TFM_OK) {
            memset(tfm_input(&m), 3, tfm_input_size(&m));
            tfm_invoke(&m);
            ran++;
        } else {
            refused++;
            if (tfm_invoke(&m) != TFM_ERR_ARG || tfm_input(&m) || tfm_output_size(&m)) return 1;
        }
        free(arena);
        free(blob);
    }
    printf("%d %d\n", ran, refused);
    return 0;
}
