/* TinyFleet node for the Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4F).
 *
 * A thin board layer: it wires the portable C99 core (node_firmware/nano33/core:
 * features, TF1 serial frames, OTA, the blob runtime) to the board's sensors and
 * to Serial, where the gateway's serial bridge speaks for the node over MQTT.
 * `tinyfleet flash nano33` stages this sketch with the core, the runtime, the
 * factory blob (tfn_factory_blob.c) and tfn_build_config.h, then runs arduino-cli.
 *
 * Two inference paths, chosen at compile time:
 *  - default: the TinyFleet blob runtime; models arrive over the air into A/B slots.
 *  - TFN_USE_TFLM (flash nano33 --tflm DIR): the classic path, the exported .tflite
 *    C array run by the Arduino TFLM library (Chirale_TensorFlowLite); a new model
 *    needs a reflash, and OTA offers are refused.
 *
 * Sensors: Rev1 LSM9DS1 + HTS221 + LPS22HB; Rev2 (TFN_SENSE_REV2) BMI270 + HS300x +
 * LPS22HB; PDM microphone as the raw source for audio models (TFN_RAW_MIC).
 *
 * Vibration windows: the features are defined on TFN_WINDOW samples at TFN_RATE_HZ
 * (1 kHz, node_firmware/micropython/features.py). Neither IMU has a 1 kHz rate, so the
 * accelerometer runs at a native rate (LSM9DS1 952 Hz, BMI270 800 Hz) and each window
 * is resampled to 1 kHz (core/tfn_resample). See README.md "IMU rate".
 *
 * Time: the board has no real-time clock. Every "ts" the node sends is its uptime in
 * ms (64-bit, it does not wrap with millis()); see README.md "Time".
 *
 * Checked here only against node_firmware/nano33/shim (declarations with the real
 * libraries' signatures, and an emulation on qemu mps2-an386), never on a board. */
#include "tfn_build_config.h" /* first: TFN_SENSE_REV2 and TFN_USE_TFLM pick the includes */

#include <Arduino.h>
#include <Wire.h>
#include <PDM.h>
#include <Arduino_LPS22HB.h>
#if TFN_SENSE_REV2
#include <Arduino_BMI270_BMM150.h>
#include <Arduino_HS300x.h>
#define ENV HS300x
#else
#include <Arduino_LSM9DS1.h>
#include <Arduino_HTS221.h>
#define ENV HTS
#endif
#include <mbed.h> /* mbed::FlashIAP */

extern "C" {
#include "tfn_json.h"
#include "tfn_node.h"
#include "tfn_resample.h"
extern const uint8_t tfn_factory_blob[];
extern const uint32_t tfn_factory_blob_len;
}

#if TFN_USE_TFLM
#include <Chirale_TensorFlowLite.h>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#endif

static_assert(TFN_FEATURES != TFN_FEAT_WEATHER,
              "sensor \"weather\" needs the hour of day and the Nano 33 has no clock: its features "
              "would be computed from the uptime. Use vibration or sine on this board until the "
              "gateway sends the time (node_firmware/nano33/README.md, Time).");

#ifndef TFN_ARENA_BYTES
#define TFN_ARENA_BYTES (48 * 1024)
#endif
#define SLOT_BYTES (64u * 1024u)

static tfn_node node;
alignas(16) static uint8_t arena[TFN_ARENA_BYTES];

/* ---------------------------------------------------------------- time: uptime, 64-bit */
static uint64_t uptime_ms(void)
{
    static uint32_t last;
    static uint64_t high;
    uint32_t now = millis();
    if (now < last) high += 1ull << 32;
    last = now;
    return high | now;
}

/* ---------------------------------------------------------------- storage: two
 * 64 KiB slots and two 4 KiB meta sectors at the top of the internal flash,
 * memory-mapped for reading (the runtime reads the blob in place). */
static mbed::FlashIAP iap;
static uint32_t slot_addr[2], meta_addr[2];

static const uint8_t *st_slot(void *, int s)
{
    if (s == TFN_SLOT_FACTORY) return tfn_factory_blob_len ? tfn_factory_blob : NULL;
    return (const uint8_t *)(uintptr_t)slot_addr[s];
}
static int st_erase(void *, int s, uint32_t len)
{
    uint32_t sector = iap.get_sector_size(slot_addr[s]);
    uint32_t n = (len + sector - 1) / sector * sector;
    return iap.erase(slot_addr[s], n) == 0 ? 0 : -1;
}
static int st_write(void *, int s, uint32_t off, const uint8_t *data, uint32_t len)
{
    return iap.program(data, slot_addr[s] + off, len) == 0 ? 0 : -1;
}
static int st_meta_read(void *, int p, void *buf, uint32_t len)
{
    memcpy(buf, (const void *)(uintptr_t)meta_addr[p], len);
    return 0; /* a blank page fails the record's magic and crc */
}
static int st_meta_write(void *, int p, const void *buf, uint32_t len)
{
    static uint32_t words[(sizeof(tfn_meta) + 3) / 4];
    memset(words, 0xFF, sizeof words);
    memcpy(words, buf, len);
    if (iap.erase(meta_addr[p], iap.get_sector_size(meta_addr[p])) != 0) return -1;
    return iap.program(words, meta_addr[p], sizeof words) == 0 ? 0 : -1;
}
static tfn_storage storage;

static void storage_init(void)
{
    iap.init();
    uint32_t end = iap.get_flash_start() + iap.get_flash_size();
    uint32_t sector = iap.get_sector_size(end - 1);
    meta_addr[1] = end - sector;
    meta_addr[0] = end - 2 * sector;
    slot_addr[1] = meta_addr[0] - SLOT_BYTES;
    slot_addr[0] = slot_addr[1] - SLOT_BYTES;
    storage.slot_size = SLOT_BYTES;
    storage.slot = st_slot;
    storage.erase = st_erase;
    storage.write = st_write;
    storage.meta_read = st_meta_read;
    storage.meta_write = st_meta_write;
}

/* ---------------------------------------------------------------- IMU */
static bool i2c_write(uint8_t dev, uint8_t reg, uint8_t value)
{
    Wire1.beginTransmission(dev);
    Wire1.write(reg);
    Wire1.write(value);
    return Wire1.endTransmission() == 0;
}

#define IMU_MAX_IN 320 /* samples per axis before resampling (276 at 952 Hz) */
static float imu_raw[3][IMU_MAX_IN];
static bool imu_ok;

#if TFN_SENSE_REV2
/* BMI270 at 800 Hz. The library reads through the Bosch API without the FIFO: per sample an
 * INT_STATUS read (data ready) and a 24-byte data read, about 0.8 ms at 400 kHz, so 800 Hz
 * (1.25 ms) keeps up and 1600 Hz would not. Content above ~400 Hz cannot be measured, so
 * the top band (301-500 Hz) sees only its lower part. */
#define IMU_ODR_HZ 800.0f
#define BMI270_ADDR 0x68
#define BMI270_ACC_CONF 0x40

static int imu_setup(void)
{
    if (!IMU.begin()) return -1;
    Wire1.setClock(400000);
    /* ACC_CONF: filter_perf (bit 7) | bwp normal_avg4 (2 << 4) | odr 800 Hz (0x0B); range stays
     * +-4 g, the library's scale (BMI2_* values of the Bosch API's bmi2_defs.h) */
    if (!i2c_write(BMI270_ADDR, BMI270_ACC_CONF, 0xAB)) return -1;
    delay(1);
    return 0;
}

/* n consecutive samples. Polling can miss one unnoticed, so the window is timed: n samples
 * after the first span n periods; half a period more means one was lost. */
static int imu_read(float *x, float *y, float *z, int n)
{
    uint32_t start = millis(), t0 = 0;
    int got = -1; /* the first sample only starts the clock */
    while (got < n) {
        float a, b, c;
        if (millis() - start > 2000u) return -1;
        if (!IMU.accelerationAvailable()) continue;
        if (!IMU.readAcceleration(a, b, c)) return -1;
        if (got < 0) {
            t0 = micros();
        } else {
            x[got] = a;
            y[got] = b;
            z[got] = c;
        }
        got++;
    }
    return micros() - t0 > (uint32_t)(((float)n + 0.5f) * 1e6f / IMU_ODR_HZ) ? -1 : 0;
}
#else
/* LSM9DS1 at 952 Hz. With the gyroscope on, the accelerometer shares the gyroscope's ODR
 * (CTRL_REG1_G, 119 Hz after IMU.begin()); with it powered down the accelerometer runs alone
 * at CTRL_REG6_XL's ODR. Its anti-aliasing bandwidth is then 408 Hz (automatic), so the top
 * band (301-500 Hz) sees content up to about 408 Hz. Samples go through the 32-deep FIFO;
 * at 400 kHz one sample takes about 0.25 ms to read (0.9 ms at the default 100 kHz, against
 * a 1.05 ms sample period). */
#define IMU_ODR_HZ 952.0f
#define LSM9DS1_AG 0x6B
#define LSM9DS1_CTRL_REG1_G 0x10
#define LSM9DS1_CTRL_REG6_XL 0x20
#define LSM9DS1_FIFO_CTRL 0x2E
#define LSM9DS1_FIFO_SRC 0x2F
#define LSM9DS1_FIFO_OVRN 0x40

static int i2c_read(uint8_t dev, uint8_t reg)
{
    Wire1.beginTransmission(dev);
    Wire1.write(reg);
    if (Wire1.endTransmission(false) != 0 || Wire1.requestFrom(dev, (size_t)1) != 1) return -1;
    return Wire1.read();
}

static int imu_setup(void)
{
    if (!IMU.begin()) return -1;
    Wire1.setClock(400000);
    if (!i2c_write(LSM9DS1_AG, LSM9DS1_CTRL_REG1_G, 0x00)) return -1;  /* gyroscope off */
    if (!i2c_write(LSM9DS1_AG, LSM9DS1_CTRL_REG6_XL, 0xD0)) return -1; /* 952 Hz, +-4 g */
    IMU.setContinuousMode();
    return 0;
}

/* n consecutive samples from a restarted FIFO. A sample is lost only when the FIFO is
 * full (32) as another arrives. Each batch pops at most the count seen before it, so if
 * that count stays below 16, a FIFO that filled up during a batch still holds more than
 * 16 at the next look, whatever the OVRN flag did meanwhile (ST clears it on the next
 * read). So: 16 or more unread (or OVRN) at any look, the last one included, refuses the
 * window; at 400 kHz the loop keeps the FIFO at a few samples. */
static int fifo_level(void)
{
    int src = i2c_read(LSM9DS1_AG, LSM9DS1_FIFO_SRC);
    return src < 0 || (src & LSM9DS1_FIFO_OVRN) || (src & 0x3F) >= 16 ? -1 : (src & 0x3F);
}

static int imu_read(float *x, float *y, float *z, int n)
{
    uint32_t start = millis();
    int got = -1; /* ST: discard the first sample after a FIFO mode switch */
    if (!i2c_write(LSM9DS1_AG, LSM9DS1_FIFO_CTRL, 0x00)) return -1; /* bypass: empties it */
    if (!i2c_write(LSM9DS1_AG, LSM9DS1_FIFO_CTRL, 0xC0)) return -1; /* continuous again */
    while (got < n) {
        int k = fifo_level();
        if (k < 0 || millis() - start > 2000u) return -1;
        for (; k > 0 && got < n; k--) {
            float a, b, c;
            if (!IMU.readAcceleration(a, b, c)) return -1;
            if (got >= 0) {
                x[got] = a;
                y[got] = b;
                z[got] = c;
            }
            got++;
        }
    }
    return fifo_level() < 0 ? -1 : 0;
}
#endif

/* TFN_WINDOW samples per axis at TFN_RATE_HZ, resampled from IMU_ODR_HZ. */
static int b_vibration(void *, float *ax, float *ay, float *az, int n)
{
    int need = tfn_resample_need(IMU_ODR_HZ, (float)TFN_RATE_HZ, n);
    if (!imu_ok || need < 0 || need > IMU_MAX_IN) return -1;
    if (imu_read(imu_raw[0], imu_raw[1], imu_raw[2], need)) return -1;
    if (tfn_resample(imu_raw[0], need, IMU_ODR_HZ, ax, n, (float)TFN_RATE_HZ) ||
        tfn_resample(imu_raw[1], need, IMU_ODR_HZ, ay, n, (float)TFN_RATE_HZ) ||
        tfn_resample(imu_raw[2], need, IMU_ODR_HZ, az, n, (float)TFN_RATE_HZ))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- board */
static void b_write(void *, const char *data, size_t len) { Serial.write((const uint8_t *)data, len); }
static uint32_t b_millis(void *) { return millis(); }
static int64_t b_epoch(void *) { return (int64_t)uptime_ms(); } /* no RTC: uptime, see the top */

static int b_weather(void *, float *t, float *h, float *p)
{
    *t = ENV.readTemperature();
    *h = ENV.readHumidity();
    *p = BARO.readPressure() * 10.0f; /* kPa -> hPa */
    return 0;
}

#if TFN_RAW_MIC
static volatile int16_t pcm[512];
static volatile int pcm_n;
static void on_pdm(void)
{
    int n = PDM.available() / 2;
    if (n > (int)(sizeof pcm / 2) - pcm_n) n = (int)(sizeof pcm / 2) - pcm_n;
    if (n > 0) {
        PDM.read((void *)(pcm + pcm_n), n * 2);
        pcm_n += n;
    }
}
static int b_raw(void *, float *x, int n)
{
    if (n > (int)(sizeof pcm / 2)) return -1;
    pcm_n = 0;
    uint32_t start = millis();
    while (pcm_n < n)
        if (millis() - start > 2000u) return -1;
    for (int i = 0; i < n; i++) x[i] = pcm[i] / 32768.0f;
    return 0;
}
#else
static int b_raw(void *, float *x, int n) /* the sine model: a sweep over [0, 2 pi) */
{
    static uint32_t k;
    for (int i = 0; i < n; i++) x[i] = (float)(k++ % 64u) * (6.2831853f / 64.0f);
    return 0;
}
#endif

#if !TFN_USE_TFLM
static uint8_t fleet_key[64], node_key[64];

static size_t hex_key(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++) {
        char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
        out[i] = (uint8_t)strtoul(b, NULL, 16);
    }
    return n;
}
#endif

#if TFN_USE_TFLM
/* ---------------------------------------------------------------- classic TFLM path */
static tflite::MicroMutableOpResolver<12> resolver;
static tflite::MicroInterpreter *interpreter;

static void tflm_setup(void)
{
    static const tflite::Model *model = tflite::GetModel(TFN_TFLM_MODEL);
    resolver.AddFullyConnected();
    resolver.AddConv2D();
    resolver.AddDepthwiseConv2D();
    resolver.AddAveragePool2D();
    resolver.AddMaxPool2D();
    resolver.AddReshape();
    resolver.AddSoftmax();
    resolver.AddLogistic();
    resolver.AddTanh();
    resolver.AddAdd();
    resolver.AddMean();
    resolver.AddQuantize();
    static tflite::MicroInterpreter it(model, resolver, arena, sizeof arena);
    interpreter = &it;
    if (interpreter->AllocateTensors() != kTfLiteOk) interpreter = NULL;
}

/* One inference and telemetry message, interpreted by TFN_TASK as tfn_node_infer does. */
static void tflm_step(void)
{
    static float x[TFN_MAX_INPUT];
    static uint32_t seq;
    if (!interpreter) return;
    TfLiteTensor *in = interpreter->input(0), *out = interpreter->output(0);
    int n = (int)in->bytes, nf;
    if (n > TFN_MAX_INPUT) return;
    if (TFN_FEATURES == TFN_FEAT_VIBRATION) {
        static float w[3][TFN_WINDOW];
        if (b_vibration(NULL, w[0], w[1], w[2], TFN_WINDOW)) return;
        tfn_vibration_features(w[0], w[1], w[2], x);
        nf = TFN_N_VIBRATION;
    } else {
        if (b_raw(NULL, x, n)) return;
        nf = n;
    }
    if (nf != n || !(in->params.scale > 0.0f)) return;
    for (int i = 0; i < n; i++) { /* TFLite quantize: round half away from zero */
        float q = roundf(x[i] / in->params.scale) + (float)in->params.zero_point;
        in->data.int8[i] = (int8_t)(q < -128.0f ? -128 : q > 127.0f ? 127 : (int)q);
    }
    if (interpreter->Invoke() != kTfLiteOk) return;
    const int8_t *y = out->data.int8;
    int no = (int)out->bytes, best = 0;
    float result, score;
    if (TFN_TASK == TFN_TASK_ANOMALY) { /* reconstruction error of the input */
        float err = 0.0f;
        if (no != n) return;
        for (int i = 0; i < no; i++) {
            float d = x[i] - out->params.scale * (float)(y[i] - out->params.zero_point);
            err += d * d;
        }
        score = err / (float)no;
        result = score > TFN_THRESHOLD ? 1.0f : 0.0f;
    } else if (TFN_TASK == TFN_TASK_REGRESS) {
        result = score = out->params.scale * (float)(y[0] - out->params.zero_point);
    } else {
        for (int i = 1; i < no; i++)
            if (y[i] > y[best]) best = i;
        result = (float)best;
        score = out->params.scale * (float)(y[best] - out->params.zero_point);
    }
    static char buf[2 * TFN_MAX_PAYLOAD / 3];
    tfn_jw w;
    tfn_jw_init(&w, buf, sizeof buf);
    tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "v"); tfn_jw_int(&w, 1);
    tfn_jw_key(&w, "node"); tfn_jw_str(&w, TFN_NODE_ID);
    tfn_jw_key(&w, "items"); tfn_jw_begin(&w, '['); tfn_jw_next(&w); tfn_jw_begin(&w, '{');
    tfn_jw_key(&w, "seq"); tfn_jw_int(&w, seq++); /* not persisted on this path */
    tfn_jw_key(&w, "ts"); tfn_jw_int(&w, (int64_t)uptime_ms());
    tfn_jw_key(&w, "model"); tfn_jw_str(&w, "tflm");
    tfn_jw_key(&w, "model_version"); tfn_jw_int(&w, 0);
    tfn_jw_key(&w, "result");
    if (TFN_TASK == TFN_TASK_REGRESS) tfn_jw_float(&w, result);
    else tfn_jw_int(&w, (int64_t)result);
    tfn_jw_key(&w, "score"); tfn_jw_float(&w, score);
    if (TFN_SEND_FEATURES) {
        tfn_jw_key(&w, "features");
        tfn_jw_begin(&w, '[');
        for (int i = 0; i < nf; i++) { tfn_jw_next(&w); tfn_jw_float(&w, x[i]); }
        tfn_jw_end(&w, ']');
    }
    tfn_jw_end(&w, '}'); tfn_jw_end(&w, ']'); tfn_jw_end(&w, '}');
    if (!w.err) tfn_node_send(&node, "telemetry", buf, w.len);
}
#endif

/* ---------------------------------------------------------------- Arduino */
void setup()
{
    Serial.begin(115200);
    for (uint32_t t = millis(); !Serial && millis() - t < 3000u;) {
    }
    imu_ok = imu_setup() == 0;
    ENV.begin();
    BARO.begin();
#if TFN_RAW_MIC
    PDM.onReceive(on_pdm);
    PDM.begin(1, 16000);
#endif
    storage_init();
    node.board.ctx = NULL;
    node.board.write = b_write;
    node.board.millis = b_millis;
    node.board.epoch_ms = b_epoch;
    node.board.read_vibration = b_vibration;
    node.board.read_weather = b_weather;
    node.board.read_raw = b_raw;
    node.cfg.node_id = TFN_NODE_ID;
    node.cfg.fw = "0.1.0";
    node.cfg.features = TFN_FEATURES;
    node.cfg.task = TFN_TASK;
    node.cfg.threshold = TFN_THRESHOLD;
    node.cfg.sample_ms = TFN_SAMPLE_MS;
    node.cfg.heartbeat_ms = TFN_HEARTBEAT_MS;
    node.cfg.trend_ms = 3u * 3600u * 1000u;
    node.cfg.send_features = TFN_SEND_FEATURES;
    node.ota.st = &storage;
#if TFN_USE_TFLM
    node.cfg.sample_ms = 0; /* telemetry comes from tflm_step() */
    node.ota.arena = NULL;  /* the arena is TFLM's: the blob runtime must not carve it up */
    node.ota.arena_len = 0;
    tflm_setup();
#else
    node.ota.arena = arena;
    node.ota.arena_len = sizeof arena;
    node.ota.fleet_key = fleet_key;
    node.ota.fleet_key_len = hex_key(TFN_FLEET_KEY_HEX, fleet_key, sizeof fleet_key);
    if (strlen(TFN_NODE_KEY_HEX)) {
        node.ota.node_key = node_key;
        node.ota.node_key_len = hex_key(TFN_NODE_KEY_HEX, node_key, sizeof node_key);
    }
#endif
    tfn_node_start(&node);
}

void loop()
{
    static uint8_t buf[256];
    static uint32_t last;
    int n = 0;
    while (Serial.available() && n < (int)sizeof buf) buf[n++] = (uint8_t)Serial.read();
    if (n) tfn_node_rx(&node, buf, (size_t)n);
    tfn_node_poll(&node);
#if TFN_USE_TFLM
    if (millis() - last >= TFN_SAMPLE_MS) {
        last = millis();
        tflm_step();
    }
#else
    (void)last;
#endif
}
