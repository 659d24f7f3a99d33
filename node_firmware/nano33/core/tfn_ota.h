/* OTA of the model blob into A/B slots with the ESP32 node's rules: HMAC first,
 * then target model, runtime, size and version (a lower one only when signed as
 * a rollback); chunk crc32, blob sha256, golden-vector self-test through
 * tfm_runtime, atomic switch through a two-page meta record, rollback when the
 * self-test fails or a trial was cut short by a reset. */
#ifndef TFN_OTA_H
#define TFN_OTA_H

#include <stddef.h>
#include <stdint.h>

#include "tfm_runtime.h"
#include "tfn_manifest.h"

#define TFN_RUNTIME_VERSION 1 /* contract RUNTIME_VERSION */
#define TFN_SLOT_FACTORY 2    /* read-only blob built into the firmware */
#ifndef TFN_OTA_WINDOW
#define TFN_OTA_WINDOW 8      /* chunks per ota/request */
#endif
#ifndef TFN_OTA_TIMEOUT_MS
#define TFN_OTA_TIMEOUT_MS 3000 /* no chunk for this long: ask again */
#endif
#ifndef TFN_OTA_RETRIES
#define TFN_OTA_RETRIES 5       /* then FAILED timeout */
#endif

/* Flash (or RAM) the board provides. Slots are memory-mapped for reading. */
typedef struct {
    void *ctx;
    uint32_t slot_size; /* bytes per writable slot */
    /* 0/1: A/B slots, TFN_SLOT_FACTORY: the built-in blob (NULL when there is none). */
    const uint8_t *(*slot)(void *ctx, int slot);
    int (*erase)(void *ctx, int slot, uint32_t len);  /* 0 = ok */
    /* off and len are multiples of 4; the slot was erased first. */
    int (*write)(void *ctx, int slot, uint32_t off, const uint8_t *data, uint32_t len);
    /* Two meta pages, each holding one tfn_meta; a read of a blank page may fail. */
    int (*meta_read)(void *ctx, int page, void *buf, uint32_t len);
    int (*meta_write)(void *ctx, int page, const void *buf, uint32_t len);
} tfn_storage;

/* Persistent node state; the valid copy with the highest seq wins at boot. */
typedef struct {
    uint32_t magic, seq;
    uint8_t active, previous, trial, last_state;
    uint32_t size[2];
    uint32_t tele_seq;          /* telemetry seq numbers below this were (maybe) used */
    char deployment[TFN_STR_MAX + 1]; /* last deployment that reached a final state */
    char reason[19];
    /* download in progress, saved after every chunk so a reset re-fetches at most one */
    uint8_t dl_active, dl_target, dl_pending_len, dl_pad;
    uint8_t dl_blob_id[8];  /* first bytes of the blob's sha256 */
    uint8_t dl_pending[4];  /* bytes not yet written (writes are whole words) */
    uint32_t dl_next, dl_flushed;
    uint32_t crc;
} tfn_meta;

/* Sends one message: kind is "ota/state" or "ota/request", json its payload. */
typedef void (*tfn_send_fn)(void *ctx, const char *kind, const char *json, size_t len);

typedef struct {
    /* set by the caller before tfn_ota_boot */
    const tfn_storage *st;
    const char *node_id;
    const uint8_t *fleet_key, *node_key; /* node_key may be NULL */
    size_t fleet_key_len, node_key_len;
    uint8_t *arena;
    size_t arena_len;
    tfn_send_fn send;
    void *send_ctx;
    /* state */
    tfm_model model;  /* the running model, bound to `arena` */
    int model_ok;
    tfn_meta meta;
    int meta_page;
    tfn_manifest man;
    int downloading, target;
    uint32_t n_chunks, next, window_end, flushed, pending_len, last_ms;
    uint8_t pending[4];
    int retries;
    uint32_t bad_chunks, requests; /* counters, also for tests */
    uint32_t seq; /* next telemetry seq */
} tfn_ota;

/* Loads the meta record, undoes an unfinished trial (reported as ROLLED_BACK
 * self_test), and binds the best valid model. 0 when a model runs. */
int tfn_ota_boot(tfn_ota *o);
void tfn_ota_offer(tfn_ota *o, const char *json, size_t len, uint32_t now_ms);
void tfn_ota_chunk(tfn_ota *o, const uint8_t *frame, size_t len, uint32_t now_ms);
void tfn_ota_tick(tfn_ota *o, uint32_t now_ms);

/* The running blob and its header fields. */
const uint8_t *tfn_ota_blob(const tfn_ota *o);
const char *tfn_blob_name(const uint8_t *blob, char out[32]);
uint32_t tfn_blob_version(const uint8_t *blob);
float tfn_blob_scale(const uint8_t *blob, int output);

/* Telemetry sequence numbers that survive resets: reserves blocks in the meta record. */
uint32_t tfn_ota_next_seq(tfn_ota *o);

#endif
