/* The Nano 33 node: samples sensors through the board's function pointers,
 * computes features, runs the int8 model and speaks the wire contract as TF1
 * serial frames (telemetry, heartbeat, status, OTA). No heap: the caller owns
 * one tfn_node (about 23 KiB plus the arena) for the life of the program. */
#ifndef TFN_NODE_H
#define TFN_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "tfn_features.h"
#include "tfn_frame.h"
#include "tfn_ota.h"

#define TFN_MAX_INPUT 512 /* model inputs the node quantizes (contract MAX_FEATURES) */

typedef enum { TFN_FEAT_RAW = 0, TFN_FEAT_VIBRATION, TFN_FEAT_WEATHER } tfn_feature_kind;
typedef enum { TFN_TASK_CLASSIFY = 0, TFN_TASK_REGRESS, TFN_TASK_ANOMALY } tfn_task;

/* What the board layer provides; a sensor the board lacks is NULL. */
typedef struct {
    void *ctx;
    void (*write)(void *ctx, const char *data, size_t len); /* one whole frame line */
    uint32_t (*millis)(void *ctx);
    int64_t (*epoch_ms)(void *ctx); /* wall clock in ms; boards without one may return millis */
    /* Each returns 0 on success. Vibration fills n samples per axis at TFN_RATE_HZ (g). */
    int (*read_vibration)(void *ctx, float *ax, float *ay, float *az, int n);
    int (*read_weather)(void *ctx, float *temp_c, float *humidity_pct, float *pressure_hpa);
    int (*read_raw)(void *ctx, float *x, int n); /* model inputs as floats, any other model */
    uint32_t (*free_mem)(void *ctx);
} tfn_board;

typedef struct {
    const char *node_id, *fw;
    tfn_feature_kind features;
    tfn_task task;
    float threshold;             /* anomaly: score above it gives result 1 */
    uint32_t sample_ms;          /* one inference and telemetry message per period */
    uint32_t heartbeat_ms;
    uint32_t trend_ms;           /* pressure trend span (3 h in the field) */
    int send_features;           /* attach the float features to telemetry */
} tfn_config;

typedef struct {
    uint32_t frames, bad_crc, malformed, oversize, ignored;
} tfn_rx_counts;

typedef struct {
    tfn_board board;
    tfn_config cfg;
    tfn_ota ota;
    tfn_line_reader rx;
    tfn_rx_counts counts;
    uint32_t infer_errors, boot_ms, last_sample, last_heartbeat, last_trend;
    int started;
    float pressure_hist[4]; /* one sample per trend_ms / 3; [3] is the oldest */
    int pressure_n;
    uint8_t payload[TFN_MAX_PAYLOAD];
    char tx[TFN_MAX_LINE + 1];
    char json[2 * TFN_MAX_PAYLOAD / 3];
} tfn_node;

/* Before calling: fill n->board, n->cfg and the storage, keys and arena fields of n->ota.
 * Boots the OTA slots and sends status online and a heartbeat. 0 when a model runs. */
int tfn_node_start(tfn_node *n);
/* Bytes from the serial port. */
void tfn_node_rx(tfn_node *n, const uint8_t *data, size_t len);
/* Periodic work: sampling, heartbeat, OTA timeouts. Call often. */
void tfn_node_poll(tfn_node *n);

/* Quantizes x with the model's input scale and zero point, runs it and interprets
 * the output by cfg.task. 0 on success. */
int tfn_node_infer(tfn_node *n, const float *x, int nx, float *result, float *score);

/* Sends one message as a frame (exposed for the board layer's own status lines). */
void tfn_node_send(tfn_node *n, const char *kind, const char *json, size_t len);

#endif
