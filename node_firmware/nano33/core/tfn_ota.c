#include "tfn_ota.h"

#include <string.h>

#include "tfn_codec.h"
#include "tfn_json.h"
#include "tfn_sha256.h"

#define META_MAGIC 0x4D4E4654u /* "TFNM" */
#define SEQ_BLOCK 1000u
#define CHUNK_HEADER 22
#define MAX_CHUNK_DATA 4096

static const char *const states[] = {"QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED",
                                     "UPDATING", "UPDATED", "FAILED", "ROLLED_BACK"};
enum { S_QUEUED, S_DOWNLOADING, S_DOWNLOADED, S_VERIFIED, S_UPDATING, S_UPDATED, S_FAILED,
       S_ROLLED_BACK };

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ------------------------------------------------------------------ blob header */

const char *tfn_blob_name(const uint8_t *blob, char out[32])
{
    uint8_t n = blob[40];
    if (n > 31) n = 31;
    memcpy(out, blob + 41, n);
    out[n] = '\0';
    return out;
}

uint32_t tfn_blob_version(const uint8_t *blob) { return rd32(blob + 16); }

float tfn_blob_scale(const uint8_t *blob, int output)
{
    uint32_t u = rd32(blob + (output ? 36 : 32));
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

const uint8_t *tfn_ota_blob(const tfn_ota *o) { return o->model_ok ? o->model.blob : NULL; }

/* ------------------------------------------------------------------ meta record */

static uint32_t meta_crc(const tfn_meta *m) { return tfn_crc32(0, m, offsetof(tfn_meta, crc)); }

static int meta_save(tfn_ota *o)
{
    o->meta.magic = META_MAGIC;
    o->meta.seq++;
    o->meta.crc = meta_crc(&o->meta);
    o->meta_page ^= 1; /* never overwrite the copy that is still valid */
    return o->st->meta_write(o->st->ctx, o->meta_page, &o->meta, sizeof o->meta);
}

static int meta_load(tfn_ota *o)
{
    tfn_meta m[2];
    int ok[2], p;
    for (p = 0; p < 2; p++)
        ok[p] = o->st->meta_read(o->st->ctx, p, &m[p], sizeof m[p]) == 0 &&
                m[p].magic == META_MAGIC && m[p].crc == meta_crc(&m[p]) && m[p].active <= 2 &&
                m[p].previous <= 2;
    if (!ok[0] && !ok[1]) return -1;
    p = ok[0] && ok[1] ? (m[1].seq > m[0].seq) : ok[1];
    o->meta = m[p];
    o->meta_page = p;
    return 0;
}

/* ------------------------------------------------------------------ messages */

static void send_state(tfn_ota *o, const char *deployment, const char *model, int64_t version,
                       int state, const char *reason)
{
    char buf[256];
    tfn_jw w;
    tfn_jw_init(&w, buf, sizeof buf);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, o->node_id);
    tfn_jw_key(&w, "deployment"); tfn_jw_str(&w, deployment);
    tfn_jw_key(&w, "model"); tfn_jw_str(&w, model);
    tfn_jw_key(&w, "version"); tfn_jw_int(&w, version);
    tfn_jw_key(&w, "state"); tfn_jw_str(&w, states[state]);
    if (reason && *reason) { tfn_jw_key(&w, "reason"); tfn_jw_str(&w, reason); }
    if (state == S_DOWNLOADING && o->n_chunks) {
        tfn_jw_key(&w, "progress"); tfn_jw_float(&w, (float)o->next / (float)o->n_chunks);
    }
    tfn_jw_end(&w, '}');
    if (!w.err) o->send(o->send_ctx, "ota/state", buf, w.len);
}

static void state(tfn_ota *o, int s, const char *reason)
{
    send_state(o, o->man.deployment, o->man.model, o->man.version, s, reason);
}

static void request(tfn_ota *o, uint32_t now_ms)
{
    char buf[160];
    tfn_jw w;
    uint32_t count = o->n_chunks - o->next;
    if (count > TFN_OTA_WINDOW) count = TFN_OTA_WINDOW;
    tfn_jw_init(&w, buf, sizeof buf);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, o->node_id);
    tfn_jw_key(&w, "deployment"); tfn_jw_str(&w, o->man.deployment);
    tfn_jw_key(&w, "index"); tfn_jw_int(&w, o->next);
    tfn_jw_key(&w, "count"); tfn_jw_int(&w, count);
    tfn_jw_end(&w, '}');
    o->window_end = o->next + count;
    o->last_ms = now_ms;
    o->requests++;
    if (!w.err) o->send(o->send_ctx, "ota/request", buf, w.len);
}

/* A final state for a verified manifest is remembered in flash, so a retained
 * offer delivered again after a reset is answered, not re-run. */
static void finish(tfn_ota *o, int s, const char *reason, int persist)
{
    o->downloading = 0;
    o->meta.dl_active = 0;
    if (persist) { /* stored before it is reported: a reset in between is answered again */
        strcpy(o->meta.deployment, o->man.deployment);
        strncpy(o->meta.reason, reason ? reason : "", sizeof o->meta.reason - 1);
        o->meta.last_state = (uint8_t)s;
        meta_save(o);
    }
    state(o, s, reason);
}

/* ------------------------------------------------------------------ models */

static const uint8_t *slot_blob(tfn_ota *o, int slot, uint32_t *len)
{
    const uint8_t *b = o->st->slot(o->st->ctx, slot);
    if (!b) return NULL;
    *len = slot == TFN_SLOT_FACTORY ? rd32(b + 8) : o->meta.size[slot];
    if (slot != TFN_SLOT_FACTORY && (*len < 44 || *len > o->st->slot_size)) return NULL;
    return b;
}

static int bind(tfn_ota *o, int slot)
{
    uint32_t len = 0;
    const uint8_t *b = slot_blob(o, slot, &len);
    o->model_ok = b && tfm_init(&o->model, b, len, o->arena, o->arena_len) == TFM_OK;
    return o->model_ok ? 0 : -1;
}

/* Every golden input must give exactly its golden output. */
static int self_test(tfn_ota *o)
{
    int i;
    size_t in = tfm_input_size(&o->model), out = tfm_output_size(&o->model);
    if (o->man.n_golden == 0) return -1;
    for (i = 0; i < o->man.n_golden; i++) {
        if (o->man.golden_len[i][0] != in || o->man.golden_len[i][1] != out) return -1;
        memcpy(tfm_input(&o->model), o->man.golden + o->man.golden_off[i][0], in);
        if (tfm_invoke(&o->model) != TFM_OK) return -1;
        if (memcmp(tfm_output(&o->model), o->man.golden + o->man.golden_off[i][1], out)) return -1;
    }
    return 0;
}

int tfn_ota_boot(tfn_ota *o)
{
    int s;
    o->downloading = 0;
    o->model_ok = 0;
    if (meta_load(o)) {
        memset(&o->meta, 0, sizeof o->meta);
        o->meta.active = o->meta.previous = TFN_SLOT_FACTORY;
        o->meta_page = 1;
    }
    if (o->meta.trial) { /* reset during a self-test: back to the previous model */
        memset(&o->man, 0, sizeof o->man);
        strcpy(o->man.deployment, o->meta.deployment);
        if (bind(o, o->meta.active) == 0) {
            char name[32];
            strcpy(o->man.model, tfn_blob_name(o->model.blob, name));
            o->man.version = tfn_blob_version(o->model.blob);
        }
        o->meta.active = o->meta.previous;
        o->meta.trial = 0;
        o->meta.last_state = S_ROLLED_BACK;
        strcpy(o->meta.reason, "self_test");
        meta_save(o);
        send_state(o, o->man.deployment, o->man.model, o->man.version, S_ROLLED_BACK, "self_test");
    }
    o->seq = o->meta.tele_seq; /* numbers below were reserved before the reset */
    if (bind(o, o->meta.active) == 0) return 0;
    for (s = 0; s <= TFN_SLOT_FACTORY; s++) /* active slot unusable: any valid model */
        if (s != o->meta.active && bind(o, s) == 0) {
            o->meta.active = (uint8_t)s;
            meta_save(o);
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------ offer */

void tfn_ota_offer(tfn_ota *o, const char *json, size_t len, uint32_t now_ms)
{
    const uint8_t *key;
    size_t key_len;
    char active_name[32];
    {
        static tfn_manifest incoming; /* ~2.5 KiB: not on the stack */
        int ok = tfn_manifest_parse(&incoming, json, len) == 0;
        /* the same offer again (retained, or the gateway restarted): resume */
        if (o->downloading && ok && !strcmp(incoming.deployment, o->man.deployment) &&
            !strcmp(incoming.hmac_hex, o->man.hmac_hex)) {
            request(o, now_ms);
            return;
        }
        if (o->downloading) finish(o, S_FAILED, "aborted", 1);
        o->man = incoming;
        if (!ok) {
            finish(o, S_FAILED, "bad_manifest", 0);
            return;
        }
    }
    if (!strcmp(o->man.deployment, o->meta.deployment) && o->meta.last_state >= S_UPDATED) {
        state(o, o->meta.last_state, o->meta.reason); /* already done: answer again */
        return;
    }
    if (!strcmp(o->man.key, "fleet")) {
        key = o->fleet_key;
        key_len = o->fleet_key_len;
    } else if (!strcmp(o->man.key, "node")) {
        key = o->node_key;
        key_len = o->node_key_len;
    } else {
        key = NULL;
        key_len = 0;
    }
    if (!key || tfn_manifest_verify(&o->man, key, key_len)) {
        finish(o, S_FAILED, "bad_hmac", 0);
        return;
    }
    state(o, S_QUEUED, NULL);
    if (o->model_ok && strcmp(o->man.model, tfn_blob_name(o->model.blob, active_name))) {
        finish(o, S_FAILED, "wrong_model", 1);
        return;
    }
    if (o->man.min_runtime > TFN_RUNTIME_VERSION) {
        finish(o, S_FAILED, "runtime_too_old", 1);
        return;
    }
    if (o->man.size > (int64_t)o->st->slot_size) {
        finish(o, S_FAILED, "too_large", 1);
        return;
    }
    if (o->man.chunk_size > MAX_CHUNK_DATA) {
        finish(o, S_FAILED, "bad_manifest", 1);
        return;
    }
    if (o->model_ok && o->man.version <= (int64_t)tfn_blob_version(o->model.blob) &&
        !o->man.rollback) {
        finish(o, S_FAILED, "downgrade", 1);
        return;
    }
    o->target = o->meta.active == 0 ? 1 : 0;
    o->n_chunks = (uint32_t)((o->man.size + o->man.chunk_size - 1) / o->man.chunk_size);
    o->retries = 0;
    if (o->meta.dl_active && o->meta.dl_target == o->target && o->meta.dl_next < o->n_chunks &&
        !memcmp(o->meta.dl_blob_id, o->man.sha256, 8)) { /* resume after a reset */
        o->next = o->meta.dl_next;
        o->flushed = o->meta.dl_flushed;
        o->pending_len = o->meta.dl_pending_len;
        memcpy(o->pending, o->meta.dl_pending, 4);
    } else {
        if (o->st->erase(o->st->ctx, o->target, (uint32_t)o->man.size)) {
            finish(o, S_FAILED, "storage", 1);
            return;
        }
        o->next = o->flushed = o->pending_len = 0;
    }
    o->downloading = 1;
    state(o, S_DOWNLOADING, NULL);
    request(o, now_ms);
}

/* ------------------------------------------------------------------ chunks */

static int flush_bytes(tfn_ota *o, const uint8_t *data, uint32_t len, int last)
{
    while (len || (last && o->pending_len)) {
        while (len && o->pending_len < 4) {
            o->pending[o->pending_len++] = *data++;
            len--;
        }
        if (o->pending_len < 4 && !last) return 0;
        while (o->pending_len < 4) o->pending[o->pending_len++] = 0xFF;
        if (o->st->write(o->st->ctx, o->target, o->flushed, o->pending, 4)) return -1;
        o->flushed += 4;
        o->pending_len = 0;
        /* whole words straight from the chunk */
        if (len >= 4) {
            uint32_t n = len & ~3u;
            if (o->st->write(o->st->ctx, o->target, o->flushed, data, n)) return -1;
            o->flushed += n;
            data += n;
            len -= n;
        }
    }
    return 0;
}

static void complete(tfn_ota *o)
{
    uint8_t digest[32];
    const uint8_t *b = o->st->slot(o->st->ctx, o->target);
    char name[32];
    int previous = o->meta.active;
    uint32_t size = (uint32_t)o->man.size;
    state(o, S_DOWNLOADED, NULL);
    tfn_sha256(b, size, digest);
    if (tfn_ct_compare(digest, o->man.sha256, 32)) {
        finish(o, S_FAILED, "bad_sha256", 1);
        return;
    }
    state(o, S_VERIFIED, NULL);
    if (size < 44) { /* signed, yet not even a blob header */
        finish(o, S_FAILED, "bad_manifest", 1);
        return;
    }
    if (strcmp(tfn_blob_name(b, name), o->man.model)) { /* the blob is another model than offered */
        finish(o, S_FAILED, "wrong_model", 1);
        return;
    }
    if (tfm_arena_size(b, size) > o->arena_len) {
        finish(o, S_FAILED, "too_large", 1);
        return;
    }
    state(o, S_UPDATING, NULL);
    /* switch in trial mode: a reset before the self-test ends returns to `previous` */
    o->meta.size[o->target] = size;
    o->meta.dl_active = 0;
    o->meta.previous = (uint8_t)previous;
    o->meta.active = (uint8_t)o->target;
    o->meta.trial = 1;
    strcpy(o->meta.deployment, o->man.deployment);
    if (meta_save(o)) {
        o->meta.active = (uint8_t)previous;
        o->meta.trial = 0;
        bind(o, previous);
        finish(o, S_FAILED, "storage", 1);
        return;
    }
    if (bind(o, o->target) == 0 && self_test(o) == 0) {
        o->meta.trial = 0;
        finish(o, S_UPDATED, NULL, 1);
        return;
    }
    o->meta.active = (uint8_t)previous;
    o->meta.trial = 0;
    bind(o, previous);
    finish(o, S_ROLLED_BACK, "self_test", 1);
}

void tfn_ota_chunk(tfn_ota *o, const uint8_t *f, size_t len, uint32_t now_ms)
{
    uint32_t index, crc, dlen, want;
    if (!o->downloading || len < CHUNK_HEADER || f[0] != 'T' || f[1] != 'C' || f[2] != 1) return;
    if (memcmp(f + 4, o->man.sha256, 8)) return; /* another blob: stale traffic */
    index = rd32(f + 12);
    crc = rd32(f + 16);
    dlen = (uint32_t)f[20] | ((uint32_t)f[21] << 8);
    if (index != o->next) return; /* duplicate or out of order: the window is re-asked */
    want = index + 1 < o->n_chunks ? (uint32_t)o->man.chunk_size
                                   : (uint32_t)(o->man.size - (int64_t)index * o->man.chunk_size);
    if (dlen != want || len != CHUNK_HEADER + dlen || tfn_crc32(0, f + CHUNK_HEADER, dlen) != crc) {
        o->bad_chunks++; /* dropped: ask again from the first missing chunk */
        request(o, now_ms);
        return;
    }
    if (flush_bytes(o, f + CHUNK_HEADER, dlen, index + 1 == o->n_chunks)) {
        finish(o, S_FAILED, "storage", 1);
        return;
    }
    o->next++;
    o->retries = 0;
    o->last_ms = now_ms;
    if (o->next == o->n_chunks) {
        complete(o);
        return;
    }
    o->meta.dl_active = 1;
    o->meta.dl_target = (uint8_t)o->target;
    memcpy(o->meta.dl_blob_id, o->man.sha256, 8);
    o->meta.dl_next = o->next;
    o->meta.dl_flushed = o->flushed;
    o->meta.dl_pending_len = (uint8_t)o->pending_len;
    memcpy(o->meta.dl_pending, o->pending, 4);
    if (meta_save(o)) {
        finish(o, S_FAILED, "storage", 1);
        return;
    }
    if (o->next == o->window_end)
        request(o, now_ms);
}


void tfn_ota_tick(tfn_ota *o, uint32_t now_ms)
{
    if (!o->downloading || now_ms - o->last_ms < TFN_OTA_TIMEOUT_MS) return;
    if (++o->retries > TFN_OTA_RETRIES) {
        finish(o, S_FAILED, "timeout", 1);
        return;
    }
    request(o, now_ms);
}

uint32_t tfn_ota_next_seq(tfn_ota *o)
{
    if (o->seq >= o->meta.tele_seq) { /* block used up (or first call after boot) */
        o->meta.tele_seq = o->seq + SEQ_BLOCK;
        meta_save(o);
    }
    return o->seq++;
}
