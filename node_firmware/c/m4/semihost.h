/* ARM semihosting (bkpt 0xAB): the only I/O the emulated M4 harness has. */
#ifndef SEMIHOST_H
#define SEMIHOST_H
#include <stddef.h>
#include <stdint.h>

static inline int sh_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Returns a handle, or -1. mode: 1 = "rb", 5 = "wb". */
static inline int sh_open(const char *name, int mode)
{
    size_t n = 0;
    uint32_t a[3];
    while (name[n]) n++;
    a[0] = (uint32_t)(uintptr_t)name;
    a[1] = (uint32_t)mode;
    a[2] = (uint32_t)n;
    return sh_call(0x01, a);
}
static inline int sh_flen(int h) { uint32_t a[1]; a[0] = (uint32_t)h; return sh_call(0x0C, a); }
/* Both return the number of bytes NOT transferred. */
static inline int sh_read(int h, void *buf, size_t n)
{
    uint32_t a[3];
    a[0] = (uint32_t)h; a[1] = (uint32_t)(uintptr_t)buf; a[2] = (uint32_t)n;
    return sh_call(0x06, a);
}
static inline int sh_write(int h, const void *buf, size_t n)
{
    uint32_t a[3];
    a[0] = (uint32_t)h; a[1] = (uint32_t)(uintptr_t)buf; a[2] = (uint32_t)n;
    return sh_call(0x05, a);
}
static inline void sh_close(int h) { uint32_t a[1]; a[0] = (uint32_t)h; sh_call(0x02, a); }
static inline void sh_exit(int code) /* SYS_EXIT_EXTENDED: reason ApplicationExit, code */
{
    uint32_t a[2];
    a[0] = 0x20026u; a[1] = (uint32_t)code;
    sh_call(0x20, a);
    for (;;) {}
}
#endif
