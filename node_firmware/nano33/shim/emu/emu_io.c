/* Semihosting for the C++ emulator (node_firmware/c/m4/semihost.h is C). */
#include "emu_io.h"

#include "semihost.h"

int emu_open(const char *name, int write) { return sh_open(name, write ? 5 : 1); }
int emu_flen(int h) { return sh_flen(h); }
int emu_read(int h, void *buf, size_t n) { return sh_read(h, buf, n); }
int emu_write(int h, const void *buf, size_t n) { return sh_write(h, buf, n); }
void emu_close(int h) { sh_close(h); }
void emu_exit(int code) { sh_exit(code); }
