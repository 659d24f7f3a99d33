/* Host build of the Nano 33 core, for tests. Modes:
 *   node   the node on stdin/stdout (a pty stands in for the USB serial port);
 *          slots and meta pages are files in --state DIR so a restart is a reboot
 *   features vibration|weather   float32 records on stdin -> float32 features on stdout
 *   resample RATE_IN RATE_OUT N_OUT   float32 records of tfn_resample_need() samples on
 *                                stdin -> N_OUT float32 each on stdout (exit 2: bad size)
 *   sha256 | hmac KEYHEX         stdin -> hex digest
 *   frame-encode KIND | frame-decode   stdin -> frame line / "kind payload-hex" or the error
 *   signing-bytes                manifest JSON on stdin -> manifest_signing_bytes
 * POSIX host code; the core itself is plain C99. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tfn_codec.h"
#include "tfn_features.h"
#include "tfn_frame.h"
#include "tfn_manifest.h"
#include "tfn_node.h"
#include "tfn_resample.h"
#include "tfn_sha256.h"

#define MAX_SLOT (256u * 1024u)
#define MAX_STDIN (1u << 20)

static uint8_t in_buf[MAX_STDIN];

static size_t read_stdin(void)
{
    size_t n = 0;
    ssize_t r;
    while (n < sizeof in_buf && (r = read(0, in_buf + n, sizeof in_buf - n)) > 0) n += (size_t)r;
    return n;
}

static void put_hex(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

static int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(hex), i;
    if (n % 2 || n / 2 > cap) return -1;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

/* ------------------------------------------------------------------ storage in files */

typedef struct {
    const char *dir;
    uint32_t slot_size;
    uint32_t slots[3][MAX_SLOT / 4]; /* A, B, factory; word-aligned like flash */
    int have_factory;
} host_flash;

static host_flash flash;
static long power_cut = -1; /* --power-cut N: the Nth storage operation is torn, then the process dies */

/* Simulated power loss: half of the operation reaches the file, then nothing more. */
static void maybe_cut(const char *path, const uint8_t *data, size_t len, long off)
{
    FILE *f;
    if (power_cut < 0 || --power_cut > 0) return;
    f = fopen(path, off < 0 ? "wb" : "r+b");
    if (f) {
        if (off > 0) fseek(f, off, SEEK_SET);
        fwrite(data, 1, len / 2, f);
        fclose(f);
    }
    _exit(99);
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", flash.dir, name);
}

static const uint8_t *hf_slot(void *ctx, int slot)
{
    (void)ctx;
    if (slot == TFN_SLOT_FACTORY && !flash.have_factory) return NULL;
    return (const uint8_t *)flash.slots[slot];
}

static int hf_erase(void *ctx, int slot, uint32_t len)
{
    char p[512], name[16];
    FILE *f;
    (void)ctx;
    if (len > flash.slot_size) return -1;
    snprintf(name, sizeof name, "slot%d.bin", slot);
    path_of(p, sizeof p, name);
    maybe_cut(p, (const uint8_t *)flash.slots[slot], 0, 0); /* dies before erasing */
    memset(flash.slots[slot], 0xFF, flash.slot_size);
    f = fopen(p, "wb");
    if (!f) return -1;
    fwrite(flash.slots[slot], 1, flash.slot_size, f);
    return fclose(f) ? -1 : 0;
}

static int hf_write(void *ctx, int slot, uint32_t off, const uint8_t *data, uint32_t len)
{
    char p[512], name[16];
    FILE *f;
    (void)ctx;
    if (off % 4 || len % 4 || off + len > flash.slot_size) return -1;
    snprintf(name, sizeof name, "slot%d.bin", slot);
    path_of(p, sizeof p, name);
    maybe_cut(p, data, len, (long)off);
    memcpy((uint8_t *)flash.slots[slot] + off, data, len);
    f = fopen(p, "r+b");
    if (!f || fseek(f, (long)off, SEEK_SET) || fwrite(data, 1, len, f) != len) {
        if (f) fclose(f);
        return -1;
    }
    return fclose(f) ? -1 : 0;
}

static int hf_meta_read(void *ctx, int page, void *buf, uint32_t len)
{
    char p[512], name[16];
    FILE *f;
    size_t n;
    (void)ctx;
    snprintf(name, sizeof name, "meta%d.bin", page);
    path_of(p, sizeof p, name);
    f = fopen(p, "rb");
    if (!f) return -1;
    n = fread(buf, 1, len, f);
    fclose(f);
    return n == len ? 0 : -1;
}

static int hf_meta_write(void *ctx, int page, const void *buf, uint32_t len)
{
    char p[512], tmp[520], name[16];
    FILE *f;
    (void)ctx;
    snprintf(name, sizeof name, "meta%d.bin", page);
    path_of(p, sizeof p, name);
    maybe_cut(p, (const uint8_t *)buf, len, -1); /* a torn page: half a record */
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    f = fopen(tmp, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) {
        if (f) fclose(f);
        return -1;
    }
    if (fclose(f)) return -1;
    return rename(tmp, p) ? -1 : 0;
}

static int load_file(const char *path, uint8_t *out, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    *len = fread(out, 1, cap, f);
    fclose(f);
    return 0;
}

/* ------------------------------------------------------------------ board */

static struct timespec t0;
static int64_t epoch_offset_ms;
static uint32_t raw_phase, rng = 12345u;

static uint32_t hb_millis(void *ctx)
{
    struct timespec t;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
}

static int64_t hb_epoch(void *ctx) { return epoch_offset_ms + hb_millis(ctx); }

static void hb_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    while (len) {
        ssize_t w = write(1, data, len);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            exit(3); /* the gateway end of the port is gone */
        }
        data += w;
        len -= (size_t)w;
    }
}

static float noise(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f - 0.5f;
}

/* A motor-like signal: shaft harmonic plus noise, deterministic. */
static int hb_vibration(void *ctx, float *ax, float *ay, float *az, int n)
{
    int i;
    (void)ctx;
    for (i = 0; i < n; i++) {
        float t = (float)(raw_phase++) / TFN_RATE_HZ;
        ax[i] = 0.3f * sinf(2.0f * 3.14159265f * 50.0f * t) + 0.05f * noise();
        ay[i] = 0.2f * sinf(2.0f * 3.14159265f * 100.0f * t) + 0.05f * noise();
        az[i] = 1.0f + 0.1f * sinf(2.0f * 3.14159265f * 25.0f * t) + 0.05f * noise();
    }
    return 0;
}

static int hb_weather(void *ctx, float *t, float *h, float *p)
{
    (void)ctx;
    *t = 18.0f + noise();
    *h = 60.0f + 5.0f * noise();
    *p = 1010.0f + noise();
    return 0;
}

static int hb_raw(void *ctx, float *x, int n)
{
    int i;
    (void)ctx;
    for (i = 0; i < n; i++) x[i] = (float)(raw_phase++ % 64u) * 0.1f - 3.2f; /* a sweep for the sine model */
    return 0;
}

static uint32_t hb_free(void *ctx)
{
    (void)ctx;
    return 200000u;
}

/* ------------------------------------------------------------------ node mode */

static tfn_node node;
static uint8_t arena[64 * 1024];
static uint8_t keys[2][128];

static int usage(void)
{
    fprintf(stderr,
            "usage: tfn_host node --state DIR --node-id ID --fleet-key HEX [--node-key HEX]\n"
            "         [--factory BLOB] [--slot-size N] [--sample-ms N] [--heartbeat-ms N]\n"
            "         [--features raw|vibration|weather] [--task classify|regress|anomaly]\n"
            "         [--threshold X] [--send-features] [--power-cut N]\n"
            "       tfn_host features vibration|weather | resample RATE_IN RATE_OUT N_OUT |\n"
            "                sha256 | hmac KEYHEX |\n"
            "                frame-encode KIND | frame-decode | signing-bytes\n");
    return 2;
}

static int run_node(int argc, char **argv)
{
    int i;
    const char *factory = NULL;
    size_t len;
    memset(&node, 0, sizeof node);
    flash.slot_size = 64u * 1024u;
    node.cfg.fw = "0.1.0";
    node.cfg.sample_ms = 500;
    node.cfg.heartbeat_ms = 5000;
    node.cfg.trend_ms = 3u * 3600u * 1000u;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--send-features")) { node.cfg.send_features = 1; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--state")) flash.dir = v;
        else if (!strcmp(a, "--node-id")) node.cfg.node_id = v;
        else if (!strcmp(a, "--factory")) factory = v;
        else if (!strcmp(a, "--slot-size")) flash.slot_size = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--sample-ms")) node.cfg.sample_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--heartbeat-ms")) node.cfg.heartbeat_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--trend-ms")) node.cfg.trend_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--threshold")) node.cfg.threshold = strtof(v, NULL);
        else if (!strcmp(a, "--power-cut")) power_cut = strtol(v, NULL, 10);
        else if (!strcmp(a, "--fleet-key") || !strcmp(a, "--node-key")) {
            int k = !strcmp(a, "--node-key");
            if (hex_decode(v, keys[k], sizeof keys[k], &len)) return usage();
            if (k) { node.ota.node_key = keys[1]; node.ota.node_key_len = len; }
            else { node.ota.fleet_key = keys[0]; node.ota.fleet_key_len = len; }
        } else if (!strcmp(a, "--features")) {
            node.cfg.features = !strcmp(v, "vibration") ? TFN_FEAT_VIBRATION
                              : !strcmp(v, "weather") ? TFN_FEAT_WEATHER : TFN_FEAT_RAW;
        } else if (!strcmp(a, "--task")) {
            node.cfg.task = !strcmp(v, "anomaly") ? TFN_TASK_ANOMALY
                          : !strcmp(v, "regress") ? TFN_TASK_REGRESS : TFN_TASK_CLASSIFY;
        } else return usage();
    }
    if (!flash.dir || !node.cfg.node_id || !node.ota.fleet_key || flash.slot_size > MAX_SLOT)
        return usage();
    if (factory) {
        if (load_file(factory, (uint8_t *)flash.slots[TFN_SLOT_FACTORY], MAX_SLOT, &len)) {
            fprintf(stderr, "tfn_host: cannot read factory blob %s\n", factory);
            return 2;
        }
        flash.have_factory = 1;
    }
    for (i = 0; i < 2; i++) { /* reload slots written before a restart */
        char p[512], name[16];
        snprintf(name, sizeof name, "slot%d.bin", i);
        path_of(p, sizeof p, name);
        load_file(p, (uint8_t *)flash.slots[i], flash.slot_size, &len);
    }
    {
        static tfn_storage st;
        st.slot_size = flash.slot_size;
        st.slot = hf_slot;
        st.erase = hf_erase;
        st.write = hf_write;
        st.meta_read = hf_meta_read;
        st.meta_write = hf_meta_write;
        node.ota.st = &st;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    {
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        epoch_offset_ms = (int64_t)rt.tv_sec * 1000 + rt.tv_nsec / 1000000;
    }
    node.board.write = hb_write;
    node.board.millis = hb_millis;
    node.board.epoch_ms = hb_epoch;
    node.board.read_vibration = hb_vibration;
    node.board.read_weather = hb_weather;
    node.board.read_raw = hb_raw;
    node.board.free_mem = hb_free;
    node.ota.arena = arena;
    node.ota.arena_len = sizeof arena;
    if (tfn_node_start(&node)) fprintf(stderr, "tfn_host: no valid model, running without one\n");
    for (;;) {
        struct pollfd pfd;
        uint8_t buf[4096];
        int r;
        pfd.fd = 0;
        pfd.events = POLLIN;
        r = poll(&pfd, 1, 5);
        if (r > 0) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) return 0; /* port closed: the process ends like a powered-off board */
            tfn_node_rx(&node, buf, (size_t)n);
        }
        tfn_node_poll(&node);
    }
}

/* ------------------------------------------------------------------ tool modes */

static int run_features(const char *kind)
{
    size_t n = read_stdin(), rec, i;
    int vib = !strcmp(kind, "vibration");
    float out[TFN_N_VIBRATION];
    rec = vib ? 3 * TFN_WINDOW * sizeof(float) : 5 * sizeof(float);
    if (n % rec) return 2;
    for (i = 0; i < n / rec; i++) {
        const float *x = (const float *)(in_buf + i * rec);
        if (vib) {
            tfn_vibration_features(x, x + TFN_WINDOW, x + 2 * TFN_WINDOW, out);
            fwrite(out, sizeof(float), TFN_N_VIBRATION, stdout);
        } else {
            tfn_weather_features(x[0], x[1], x[2], x[3], x[4], out);
            fwrite(out, sizeof(float), TFN_N_WEATHER, stdout);
        }
    }
    return 0;
}

static int run_resample(const char *rin, const char *rout, const char *nout)
{
    static float out[4096];
    size_t n = read_stdin(), rec, i;
    float fin = strtof(rin, NULL), fout = strtof(rout, NULL);
    int no = atoi(nout), need = tfn_resample_need(fin, fout, no);
    if (need < 0 || no > (int)(sizeof out / sizeof out[0])) return 2;
    rec = (size_t)need * sizeof(float);
    if (n % rec) return 2;
    for (i = 0; i < n / rec; i++) {
        if (tfn_resample((const float *)(in_buf + i * rec), need, fin, out, no, fout)) return 2;
        fwrite(out, sizeof(float), (size_t)no, stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char line[TFN_MAX_LINE + 2];
    static uint8_t payload[TFN_MAX_PAYLOAD];
    uint8_t digest[32], key[256];
    size_t n, klen;
    if (argc < 2) return usage();
    if (!strcmp(argv[1], "node")) return run_node(argc, argv);
    if (!strcmp(argv[1], "features") && argc == 3) return run_features(argv[2]);
    if (!strcmp(argv[1], "resample") && argc == 5) return run_resample(argv[2], argv[3], argv[4]);
    n = read_stdin();
    if (!strcmp(argv[1], "sha256")) {
        tfn_sha256(in_buf, n, digest);
        put_hex(digest, 32);
    } else if (!strcmp(argv[1], "hmac") && argc == 3) {
        if (hex_decode(argv[2], key, sizeof key, &klen)) return usage();
        tfn_hmac_sha256(key, klen, in_buf, n, digest);
        put_hex(digest, 32);
    } else if (!strcmp(argv[1], "frame-encode") && argc == 3) {
        size_t out;
        tfn_frame_status s = tfn_frame_encode(argv[2], in_buf, n, line, sizeof line, &out);
        if (s != TFN_FRAME_OK) {
            printf("error %d\n", (int)s);
            return 1;
        }
        fwrite(line, 1, out, stdout);
    } else if (!strcmp(argv[1], "frame-decode")) {
        static const char *names[] = {"ok", "malformed", "kind", "crc", "oversize"};
        const char *kind;
        size_t plen;
        tfn_frame_status s = tfn_frame_decode((const char *)in_buf, n, &kind, payload, sizeof payload, &plen);
        if (s != TFN_FRAME_OK) {
            printf("%s\n", names[s]);
            return 1;
        }
        printf("%s ", kind);
        put_hex(payload, plen);
    } else if (!strcmp(argv[1], "signing-bytes")) {
        static tfn_manifest m;
        if (tfn_manifest_parse(&m, (const char *)in_buf, n)) {
            printf("bad_manifest\n");
            return 1;
        }
        n = tfn_manifest_signing_bytes(&m, line, sizeof line);
        fwrite(line, 1, n, stdout);
    } else {
        return usage();
    }
    return 0;
}
