#ifndef TFN_EMU_IO_H
#define TFN_EMU_IO_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
int emu_open(const char *name, int write); /* handle or -1 */
int emu_flen(int h);
int emu_read(int h, void *buf, size_t n);  /* bytes NOT read */
int emu_write(int h, const void *buf, size_t n);
void emu_close(int h);
void emu_exit(int code);
#ifdef __cplusplus
}
#endif
#endif
