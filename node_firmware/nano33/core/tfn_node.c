#include "tfn_node.h"

#include <math.h>
#include <string.h>

#include "tfn_json.h"

static float win[3][TFN_WINDOW];
static float feats[TFN_MAX_INPUT];

void tfn_node_send(tfn_node *n, const char *kind, const char *json, size_t len)
{
    size_t out;
    if (tfn_frame_encode(kind, (const uint8_t *)json, len, n->tx, sizeof n->tx, &out) == TFN_FRAME_OK)
        n->board.write(n->board.ctx, n->tx, out);
}

static void send_cb(void *ctx, const char *kind, const char *json, size_t len)
{
    tfn_node_send((tfn_node *)ctx, kind, json, len);
}

static void send_status(tfn_node *n)
{
    tfn_jw w;
    tfn_jw_init(&w, n->json, sizeof n->json);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, n->cfg.node_id);
    tfn_jw_key(&w, "state"); tfn_jw_str(&w, "online");
    tfn_jw_key(&w, "ts"); tfn_jw_int(&w, n->board.epoch_ms(n->board.ctx));
    tfn_jw_end(&w, '}');
    if (!w.err) tfn_node_send(n, "status", n->json, w.len);
}

static void send_heartbeat(tfn_node *n)
{
    char name[32];
    const uint8_t *blob = tfn_ota_blob(&n->ota);
    tfn_jw w;
    tfn_jw_init(&w, n->json, sizeof n->json);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, n->cfg.node_id);
    tfn_jw_key(&w, "ts"); tfn_jw_int(&w, n->board.epoch_ms(n->board.ctx));
    tfn_jw_key(&w, "fw"); tfn_jw_str(&w, n->cfg.fw);
    tfn_jw_key(&w, "runtime"); tfn_jw_int(&w, TFN_RUNTIME_VERSION);
    tfn_jw_key(&w, "board"); tfn_jw_str(&w, "nano33ble");
    tfn_jw_key(&w, "models");
    tfn_jw_begin(&w, '{');
    if (blob) { tfn_jw_key(&w, tfn_blob_name(blob, name)); tfn_jw_int(&w, tfn_blob_version(blob)); }
    tfn_jw_end(&w, '}');
    tfn_jw_key(&w, "free_mem"); tfn_jw_int(&w, n->board.free_mem ? n->board.free_mem(n->board.ctx) : 0);
    tfn_jw_key(&w, "uptime"); tfn_jw_int(&w, (n->board.millis(n->board.ctx) - n->boot_ms) / 1000u);
    /* serial frames dropped since boot, by reason (docs/protocol.md: dropped and counted) */
    tfn_jw_key(&w, "serial");
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "frames"); tfn_jw_int(&w, n->counts.frames);
    tfn_jw_key(&w, "bad_crc"); tfn_jw_int(&w, n->counts.bad_crc);
    tfn_jw_key(&w, "malformed"); tfn_jw_int(&w, n->counts.malformed);
    tfn_jw_key(&w, "oversize"); tfn_jw_int(&w, n->counts.oversize);
    tfn_jw_key(&w, "ignored"); tfn_jw_int(&w, n->counts.ignored);
    tfn_jw_end(&w, '}');
    tfn_jw_key(&w, "infer_errors"); tfn_jw_int(&w, n->infer_errors);
    tfn_jw_end(&w, '}');
    if (!w.err) tfn_node_send(n, "heartbeat", n->json, w.len);
}

int tfn_node_start(tfn_node *n)
{
    int rc;
    tfn_line_reader_init(&n->rx);
    memset(&n->counts, 0, sizeof n->counts);
    n->infer_errors = 0;
    n->pressure_n = 0;
    n->ota.node_id = n->cfg.node_id;
    n->ota.send = send_cb;
    n->ota.send_ctx = n;
    n->boot_ms = n->last_sample = n->last_heartbeat = n->last_trend = n->board.millis(n->board.ctx);
    send_status(n);
    rc = tfn_ota_boot(&n->ota);
    send_heartbeat(n);
    n->started = 1;
    return rc;
}

static void on_frame(tfn_node *n, const char *line, size_t len)
{
    const char *kind;
    size_t plen;
    uint32_t now = n->board.millis(n->board.ctx);
    switch (tfn_frame_decode(line, len, &kind, n->payload, sizeof n->payload, &plen)) {
    case TFN_FRAME_OK: break;
    case TFN_FRAME_CRC: n->counts.bad_crc++; return;
    case TFN_FRAME_OVERSIZE: n->counts.oversize++; return;
    default: n->counts.malformed++; return;
    }
    n->counts.frames++;
    if (!strcmp(kind, "ota/offer"))
        tfn_ota_offer(&n->ota, (const char *)n->payload, plen, now);
    else if (!strcmp(kind, "ota/chunk"))
        tfn_ota_chunk(&n->ota, n->payload, plen, now);
    else
        n->counts.ignored++; /* node-to-gateway kinds echoed back: not for us */
}

void tfn_node_rx(tfn_node *n, const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        const char *line;
        size_t llen;
        int r = tfn_line_reader_push(&n->rx, data[i], &line, &llen);
        if (r == 1 && llen) on_frame(n, line, llen);
        else if (r == -1) n->counts.oversize++;
    }
}

int tfn_node_infer(tfn_node *n, const float *x, int nx, float *result, float *score)
{
    const uint8_t *blob = tfn_ota_blob(&n->ota);
    const tfm_model *m = &n->ota.model;
    float in_scale, out_scale;
    int32_t zp_in, zp_out;
    int8_t *q;
    const int8_t *y;
    size_t i, no;
    if (!blob || (size_t)nx != tfm_input_size(m)) return -1;
    in_scale = tfn_blob_scale(blob, 0);
    out_scale = tfn_blob_scale(blob, 1);
    zp_in = tfm_input_zero_point(m);
    zp_out = tfm_output_zero_point(m);
    if (!(in_scale > 0.0f)) return -1;
    q = tfm_input(m);
    for (i = 0; i < (size_t)nx; i++) { /* TFLite quantize: round half away from zero */
        float v = roundf(x[i] / in_scale) + (float)zp_in;
        q[i] = (int8_t)(v < -128.0f ? -128 : v > 127.0f ? 127 : (int)v);
    }
    if (tfm_invoke(m) != TFM_OK) return -1;
    y = tfm_output(m);
    no = tfm_output_size(m);
    if (n->cfg.task == TFN_TASK_ANOMALY) { /* reconstruction error of the input */
        float err = 0.0f;
        if (no != (size_t)nx) return -1;
        for (i = 0; i < no; i++) {
            float d = x[i] - out_scale * (float)(y[i] - zp_out);
            err += d * d;
        }
        *score = err / (float)no;
        *result = *score > n->cfg.threshold ? 1.0f : 0.0f;
    } else if (n->cfg.task == TFN_TASK_REGRESS) {
        *result = *score = out_scale * (float)(y[0] - zp_out);
    } else {
        size_t best = 0;
        for (i = 1; i < no; i++)
            if (y[i] > y[best]) best = i;
        *result = (float)best;
        *score = out_scale * (float)(y[best] - zp_out);
    }
    return 0;
}

/* Fills feats for the configured feature kind; returns the count, or -1. */
static int sample(tfn_node *n, int want)
{
    tfn_board *b = &n->board;
    if (n->cfg.features == TFN_FEAT_VIBRATION) {
        if (!b->read_vibration || b->read_vibration(b->ctx, win[0], win[1], win[2], TFN_WINDOW)) return -1;
        tfn_vibration_features(win[0], win[1], win[2], feats);
        return TFN_N_VIBRATION;
    }
    if (n->cfg.features == TFN_FEAT_WEATHER) {
        float t, h, p, hour;
        int64_t now = b->epoch_ms(b->ctx);
        uint32_t ms = b->millis(b->ctx);
        if (!b->read_weather || b->read_weather(b->ctx, &t, &h, &p)) return -1;
        if (n->pressure_n == 0 || ms - n->last_trend >= n->cfg.trend_ms / 3u) {
            memmove(n->pressure_hist + 1, n->pressure_hist, 3 * sizeof(float));
            n->pressure_hist[0] = p;
            if (n->pressure_n < 4) n->pressure_n++;
            n->last_trend = ms;
        }
        hour = (float)(now % 86400000) / 3600000.0f;
        /* until 3 h of history exist, the oldest sample stands in */
        tfn_weather_features(t, h, p, n->pressure_hist[n->pressure_n - 1], hour, feats);
        return TFN_N_WEATHER;
    }
    if (!b->read_raw || want <= 0 || want > TFN_MAX_INPUT || b->read_raw(b->ctx, feats, want)) return -1;
    return want;
}

static void telemetry(tfn_node *n)
{
    char name[32];
    const uint8_t *blob = tfn_ota_blob(&n->ota);
    float result, score;
    int nf, i;
    tfn_jw w;
    if (!blob) return;
    nf = sample(n, (int)tfm_input_size(&n->ota.model));
    if (nf < 0 || tfn_node_infer(n, feats, nf, &result, &score)) {
        n->infer_errors++;
        return;
    }
    tfn_jw_init(&w, n->json, sizeof n->json);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, n->cfg.node_id);
    tfn_jw_key(&w, "items");
    tfn_jw_begin(&w, '[');
    tfn_jw_next(&w);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "seq"); tfn_jw_int(&w, tfn_ota_next_seq(&n->ota));
    tfn_jw_key(&w, "ts"); tfn_jw_int(&w, n->board.epoch_ms(n->board.ctx));
    tfn_jw_key(&w, "model"); tfn_jw_str(&w, tfn_blob_name(blob, name));
    tfn_jw_key(&w, "model_version"); tfn_jw_int(&w, tfn_blob_version(blob));
    tfn_jw_key(&w, "result");
    if (n->cfg.task == TFN_TASK_REGRESS) tfn_jw_float(&w, result);
    else tfn_jw_int(&w, (int64_t)result);
    tfn_jw_key(&w, "score"); tfn_jw_float(&w, score);
    if (n->cfg.send_features) {
        tfn_jw_key(&w, "features");
        tfn_jw_begin(&w, '[');
        for (i = 0; i < nf; i++) { tfn_jw_next(&w); tfn_jw_float(&w, feats[i]); }
        tfn_jw_end(&w, ']');
    }
    tfn_jw_end(&w, '}');
    tfn_jw_end(&w, ']');
    tfn_jw_end(&w, '}');
    if (!w.err) tfn_node_send(n, "telemetry", n->json, w.len);
}

void tfn_node_poll(tfn_node *n)
{
    uint32_t now = n->board.millis(n->board.ctx);
    tfn_ota_tick(&n->ota, now);
    if (n->cfg.sample_ms && now - n->last_sample >= n->cfg.sample_ms) {
        n->last_sample = now;
        telemetry(n);
    }
    if (n->cfg.heartbeat_ms && now - n->last_heartbeat >= n->cfg.heartbeat_ms) {
        n->last_heartbeat = now;
        /* status again: a gateway that reopened the port has published our "offline" will */
        send_status(n);
        send_heartbeat(n);
    }
}
