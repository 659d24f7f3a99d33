/* The Nano 33 core on an emulated Cortex-M4 (qemu mps2-an386, semihosting), with
 * RAM slots. Reuses node_firmware/c/m4 (startup, linker script, semihosting).
 * Files in the working directory, each optional except model.blob:
 *   model.blob                    the factory model the core boots
 *   inputs.bin  -> outputs.bin    int8 inputs through the model the core bound
 *   windows.bin -> features.bin   float32 3x256 windows -> 24 vibration features
 *   serial_in.txt -> serial_out.txt   TF1 lines fed to the node, its frames back
 * mark_begin/mark_end bracket each inference and each feature window for the
 * instruction-count plugin (node_firmware/c/m4/icount_plugin.c), after one empty pair.
 * Exit codes: 0 ok, 2 file error, 3 no valid model. */
#include <stdint.h>
#include <string.h>

#include "semihost.h"
#include "tfn_features.h"
#include "tfn_node.h"

#define SLOT (64u * 1024u)

volatile uint32_t mark_state;
__attribute__((noinline)) void mark_begin(void) { mark_state = 1; }
__attribute__((noinline)) void mark_end(void) { mark_state = 2; }

static uint32_t slots[3][SLOT / 4];
static uint32_t meta[2][(sizeof(tfn_meta) + 3) / 4];
static int meta_ok[2];
static uint8_t arena[32 * 1024];
static tfn_node node;
static tfn_storage storage;
static int out_handle = -1;
static uint32_t fake_ms;
static uint8_t io[16 * 1024];
static float win[3 * TFN_WINDOW], feats[TFN_N_VIBRATION];

static const uint8_t *m_slot(void *c, int s) { (void)c; return (const uint8_t *)slots[s]; }
static int m_erase(void *c, int s, uint32_t len)
{
    (void)c;
    if (len > SLOT) return -1;
    memset(slots[s], 0xFF, SLOT);
    return 0;
}
static int m_write(void *c, int s, uint32_t off, const uint8_t *d, uint32_t len)
{
    (void)c;
    if (off + len > SLOT) return -1;
    memcpy((uint8_t *)slots[s] + off, d, len);
    return 0;
}
static int m_meta_read(void *c, int p, void *buf, uint32_t len)
{
    (void)c;
    if (!meta_ok[p]) return -1;
    memcpy(buf, meta[p], len);
    return 0;
}
static int m_meta_write(void *c, int p, const void *buf, uint32_t len)
{
    (void)c;
    memcpy(meta[p], buf, len);
    meta_ok[p] = 1;
    return 0;
}
static void b_write(void *c, const char *d, size_t n)
{
    (void)c;
    if (out_handle >= 0) sh_write(out_handle, d, n);
}
static uint32_t b_millis(void *c) { (void)c; return fake_ms; }
static int64_t b_epoch(void *c) { (void)c; return 1795400000000LL + fake_ms; }

static int read_all(const char *name, void *buf, size_t cap)
{
    int h = sh_open(name, 1), n;
    if (h < 0) return -1;
    n = sh_flen(h);
    if (n < 0 || (size_t)n > cap || sh_read(h, buf, (size_t)n)) n = -2;
    sh_close(h);
    return n;
}

int main(void)
{
    int n, i, h;
    if (read_all("model.blob", slots[TFN_SLOT_FACTORY], SLOT) < 0) return 2;
    storage.slot_size = SLOT;
    storage.slot = m_slot;
    storage.erase = m_erase;
    storage.write = m_write;
    storage.meta_read = m_meta_read;
    storage.meta_write = m_meta_write;
    node.ota.st = &storage;
    node.ota.arena = arena;
    node.ota.arena_len = sizeof arena;
    node.ota.fleet_key = (const uint8_t *)"fleet-secret-key-0123456789";
    node.ota.fleet_key_len = 27;
    node.board.write = b_write;
    node.board.millis = b_millis;
    node.board.epoch_ms = b_epoch;
    node.cfg.node_id = "nano-m4";
    node.cfg.fw = "0.1.0";
    out_handle = sh_open("serial_out.txt", 5);
    if (tfn_node_start(&node)) return 3;
    mark_begin(); /* empty pair: the marker overhead, subtracted by the host */
    mark_end();

    n = read_all("inputs.bin", io, sizeof io);
    if (n > 0) {
        const tfm_model *m = &node.ota.model;
        size_t in = tfm_input_size(m), out = tfm_output_size(m);
        h = sh_open("outputs.bin", 5);
        if (h < 0) return 2;
        for (i = 0; (size_t)(i + 1) * in <= (size_t)n; i++) {
            memcpy(tfm_input(m), io + (size_t)i * in, in);
            mark_begin();
            if (tfm_invoke(m) != TFM_OK) return 4;
            mark_end();
            sh_write(h, tfm_output(m), out);
        }
        sh_close(h);
    }
    h = sh_open("windows.bin", 1);
    if (h >= 0) {
        int o = sh_open("features.bin", 5), k = sh_flen(h) / (int)sizeof win;
        for (i = 0; i < k; i++) {
            if (sh_read(h, win, sizeof win)) return 2;
            mark_begin();
            tfn_vibration_features(win, win + TFN_WINDOW, win + 2 * TFN_WINDOW, feats);
            mark_end();
            sh_write(o, feats, sizeof feats);
        }
        sh_close(o);
        sh_close(h);
    }
    h = sh_open("serial_in.txt", 1);
    if (h >= 0) {
        int left = sh_flen(h);
        while (left > 0) {
            int k = left < (int)sizeof io ? left : (int)sizeof io;
            if (sh_read(h, io, (size_t)k)) return 2;
            tfn_node_rx(&node, io, (size_t)k);
            left -= k;
            fake_ms += 1;
        }
        sh_close(h);
    }
    if (out_handle >= 0) sh_close(out_handle);
    return 0;
}
