/* QEMU TCG plugin: counts guest instructions executed between entries of two
 * marker functions. Args: begin=<addr>,end=<addr>,out=<file>. Writes one line
 * per begin/end pair: the instructions from begin's entry to end's entry.
 * Debian ships a plugin-capable qemu but no qemu-plugin.h, so the few API
 * declarations used (QEMU plugin API version 1, qemu 7.x) are written here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t insns, started, begin_addr, end_addr;
static FILE *out;

static void on_begin(unsigned int vcpu, void *u)
{
    (void)vcpu; (void)u;
    started = insns;
}

static void on_end(unsigned int vcpu, void *u)
{
    (void)vcpu; (void)u;
    fprintf(out, "%llu\n", (unsigned long long)(insns - started));
}

/* The exec callback runs before the inline counter of the same block, so a
 * marker block's own instructions count towards the region that follows it. */
static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    (void)id;
    if (pc == begin_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_begin, QEMU_PLUGIN_CB_NO_REGS, 0);
    if (pc == end_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_end, QEMU_PLUGIN_CB_NO_REGS, 0);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit_cb(qemu_plugin_id_t id, void *u)
{
    (void)id; (void)u;
    fclose(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info,
                                                                int argc, char **argv)
{
    const char *path = "icount.txt";
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "begin=", 6)) begin_addr = strtoull(argv[i] + 6, 0, 0) & ~1ull;
        else if (!strncmp(argv[i], "end=", 4)) end_addr = strtoull(argv[i] + 4, 0, 0) & ~1ull;
        else if (!strncmp(argv[i], "out=", 4)) path = argv[i] + 4;
    }
    out = fopen(path, "w");
    if (!out || !begin_addr || !end_addr) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, 0);
    return 0;
}
