/* A model of the Nano 33 BLE Sense for running tinyfleet_nano33.ino on qemu mps2-an386.
 * NOT the Arduino core, mbed OS or the sensor libraries: it implements the shim's
 * declarations (../include) with a virtual clock and simple device models, so the sketch's
 * own code runs unchanged on an emulated Cortex-M4. What it models, and what it assumes,
 * is listed in ../README.md; everything else about the real board is untested.
 *
 * Files in the working directory (semihosting):
 *   emu.cfg          key value lines (below), optional
 *   serial_in.txt    bytes the "gateway" sends, available from serial_in_ms on
 *   serial_out.txt   every byte the sketch wrote to Serial while the port was open
 *   flash_in.bin     512 KiB: the top half of the 1 MiB flash at power-on (else erased)
 *   flash_out.bin    the same region when the run ends (a power cycle = run again with it)
 *   tflm_model.blob  (TFLM build only) the TinyFleet blob the shim interpreter runs
 *   emu_report.txt   counters: I2C clock and transactions, flash operations, serial bytes,
 *                    IMU samples overwritten unread (LSM9DS1: includes the idle FIFO between
 *                    windows, which the sketch restarts; BMI270: includes the idle time)
 * emu.cfg keys: run_ms, usb_connect_ms, serial_in_ms, millis_offset (ms added to the
 *   uptime counter: exercises the 32-bit wrap without 49.7 days of emulation),
 *   odr_ppm (IMU clock error), tone AXIS HZ G PHASE, offset AXIS G, pdm_tone HZ AMP,
 *   temp_c, humidity, pressure_kpa, i2c_overhead_us, i2c_max_hz (caps what setClock asks
 *   for), usb_ns_per_byte.
 * Exit codes: 0 ok, 5 the program image reaches into the emulated user flash. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "Arduino.h"
#include "PDM.h"
#include "Wire.h"
#include "mbed.h"
#include "Arduino_LPS22HB.h"
#if TFN_SENSE_REV2
#include "Arduino_BMI270_BMM150.h"
#include "Arduino_HS300x.h"
#else
#include "Arduino_HTS221.h"
#include "Arduino_LSM9DS1.h"
#endif

#include "emu_io.h"

void setup();
void loop();

/* ------------------------------------------------------------------ configuration */

namespace {

struct Tone {
    int axis;
    double hz, g, phase;
};

struct Config {
    uint64_t run_ms = 10000, usb_connect_ms = 500, serial_in_ms = 1000, millis_offset = 0;
    double odr_ppm = 0;
    Tone tones[12];
    int n_tones = 0;
    double offset[3] = {0, 0, 0};
    double pdm_hz = 440, pdm_amp = 0.25;
    float temp_c = 21.5f, humidity = 45.0f, pressure_kpa = 101.3f;
    uint64_t i2c_overhead_ns = 20000; /* driver + bus turnaround per transaction (assumed) */
    uint32_t i2c_max_hz = 400000;     /* the nRF52840 TWIM's fastest standard rate */
    uint64_t usb_ns_per_byte = 10000; /* USB CDC at ~100 KB/s (assumed) */
};

Config cfg;
uint64_t now_ns;

struct Report {
    uint64_t i2c_transactions, i2c_bits, i2c_hz_max, flash_erases, flash_programs, flash_bad_ops,
        flash_dirty_bits, serial_out, serial_dropped, serial_in, imu_overwrites, pdm_callbacks;
} rep;

const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* A decimal number ([-+]digits[.digits][e[-+]digits]); strtod would pull malloc into the image. */
double number(const char *p, const char **end)
{
    double v = 0, sign = 1, scale = 1;
    const char *q;
    p = skip_ws(p);
    q = p;
    if (*q == '-' || *q == '+') sign = *q++ == '-' ? -1 : 1;
    if (!(*q >= '0' && *q <= '9') && *q != '.') {
        *end = p;
        return 0;
    }
    while (*q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0');
    if (*q == '.')
        for (q++; *q >= '0' && *q <= '9'; q++) v += (*q - '0') * (scale *= 0.1);
    if (*q == 'e' || *q == 'E') {
        int e = 0, es = 1;
        q++;
        if (*q == '-' || *q == '+') es = *q++ == '-' ? -1 : 1;
        while (*q >= '0' && *q <= '9') e = e * 10 + (*q++ - '0');
        v *= pow(10.0, es * e);
    }
    *end = q;
    return sign * v;
}

void parse_config(char *text)
{
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *p = skip_ws(line);
        char key[24];
        int k = 0;
        while (*p && *p != ' ' && *p != '\t' && k < 23) key[k++] = *p++;
        key[k] = 0;
        const char *end;
        double v[4] = {0, 0, 0, 0};
        for (int i = 0; i < 4; i++) {
            v[i] = number(p, &end);
            if (end == p) break;
            p = end;
        }
        if (!strcmp(key, "run_ms")) cfg.run_ms = (uint64_t)v[0];
        else if (!strcmp(key, "usb_connect_ms")) cfg.usb_connect_ms = (uint64_t)v[0];
        else if (!strcmp(key, "serial_in_ms")) cfg.serial_in_ms = (uint64_t)v[0];
        else if (!strcmp(key, "millis_offset")) cfg.millis_offset = (uint64_t)v[0];
        else if (!strcmp(key, "odr_ppm")) cfg.odr_ppm = v[0];
        else if (!strcmp(key, "tone") && cfg.n_tones < 12) cfg.tones[cfg.n_tones++] = {(int)v[0] % 3, v[1], v[2], v[3]};
        else if (!strcmp(key, "offset")) cfg.offset[(int)v[0] % 3] = v[1];
        else if (!strcmp(key, "pdm_tone")) { cfg.pdm_hz = v[0]; cfg.pdm_amp = v[1]; }
        else if (!strcmp(key, "temp_c")) cfg.temp_c = (float)v[0];
        else if (!strcmp(key, "humidity")) cfg.humidity = (float)v[0];
        else if (!strcmp(key, "pressure_kpa")) cfg.pressure_kpa = (float)v[0];
        else if (!strcmp(key, "i2c_overhead_us")) cfg.i2c_overhead_ns = (uint64_t)(v[0] * 1000);
        else if (!strcmp(key, "usb_ns_per_byte")) cfg.usb_ns_per_byte = (uint64_t)v[0];
        else if (!strcmp(key, "i2c_max_hz")) cfg.i2c_max_hz = (uint32_t)v[0];
        line = nl ? nl + 1 : NULL;
    }
}

/* The vibration signal in g on one board axis at time t. */
double signal(int axis, uint64_t t)
{
    double v = cfg.offset[axis], s = (double)t * 1e-9;
    for (int i = 0; i < cfg.n_tones; i++) {
        if (cfg.tones[i].axis != axis) continue;
        double c = cfg.tones[i].hz * s;
        c -= floor(c);
        v += cfg.tones[i].g * sin(2.0 * M_PI * c + cfg.tones[i].phase);
    }
    return v;
}

int16_t to_lsb(double g, double full_scale)
{
    double q = floor(g / full_scale * 32768.0 + 0.5);
    return (int16_t)(q > 32767 ? 32767 : q < -32768 ? -32768 : q);
}

/* ------------------------------------------------------------------ input file, serial */

uint8_t serial_in[256 * 1024];
size_t serial_in_len, serial_in_pos;
int serial_out_handle = -1;

size_t read_file(const char *name, void *buf, size_t cap)
{
    int h = emu_open(name, 0);
    if (h < 0) return 0;
    int n = emu_flen(h);
    if (n < 0 || (size_t)n > cap || emu_read(h, buf, (size_t)n)) n = 0;
    emu_close(h);
    return (size_t)n;
}

bool usb_connected() { return now_ns >= cfg.usb_connect_ms * 1000000ull; }

/* ------------------------------------------------------------------ virtual time */

void pdm_tick();

void advance(uint64_t ns)
{
    now_ns += ns;
    pdm_tick(); /* the PDM "interrupt" */
}

} // namespace

extern "C" unsigned long millis(void)
{
    advance(1000); /* each call costs about a microsecond of CPU time */
    return (unsigned long)(uint32_t)(cfg.millis_offset + now_ns / 1000000ull);
}
extern "C" unsigned long micros(void)
{
    advance(1000);
    return (unsigned long)(uint32_t)(cfg.millis_offset * 1000ull + now_ns / 1000ull);
}
extern "C" void delay(unsigned long ms) { advance((uint64_t)ms * 1000000ull); }
extern "C" void delayMicroseconds(unsigned int us) { advance((uint64_t)us * 1000ull); }

/* ------------------------------------------------------------------ Serial (USB CDC) */

arduino::USBSerial _SerialUSB;

void arduino::USBSerial::begin(unsigned long) {}

int arduino::USBSerial::available(void)
{
    if (!usb_connected() || now_ns < cfg.serial_in_ms * 1000000ull) return 0;
    size_t left = serial_in_len - serial_in_pos;
    return (int)(left > 256 ? 256 : left); /* the real class buffers 256 bytes */
}

int arduino::USBSerial::read(void)
{
    if (!available()) return -1;
    rep.serial_in++;
    return serial_in[serial_in_pos++];
}

size_t arduino::USBSerial::write(uint8_t c) { return write(&c, 1); }

size_t arduino::USBSerial::write(const uint8_t *buf, size_t size)
{
    if (!usb_connected()) { /* the real write() returns 0 until a host sets DTR */
        rep.serial_dropped += size;
        return 0;
    }
    if (serial_out_handle >= 0) emu_write(serial_out_handle, buf, size);
    rep.serial_out += size;
    advance(size * cfg.usb_ns_per_byte);
    return size;
}

arduino::USBSerial::operator bool()
{
    delay(1);
    return usb_connected();
}

/* ------------------------------------------------------------------ I2C devices */

namespace {

struct I2CDevice {
    virtual ~I2CDevice() {}
    virtual void write_reg(uint8_t reg, uint8_t value) = 0;
    virtual size_t read_regs(uint8_t reg, uint8_t *out, size_t len) = 0;
};

#if !TFN_SENSE_REV2
/* LSM9DS1 accelerometer/gyroscope (datasheet DocID025715): registers the library and the
 * sketch touch. With CTRL_REG1_G's ODR non-zero the accelerometer runs at the gyroscope's
 * rate, otherwise at CTRL_REG6_XL's (accelerometer-only mode). FIFO: 32 samples; continuous
 * mode (FIFO_CTRL 110xxxxx) overwrites the oldest and sets FIFO_SRC OVRN; bypass (000)
 * empties it and clears OVRN; reading OUT_X_XL..OUT_Z_H_XL pops one sample. */
struct Lsm9ds1 : I2CDevice {
    uint8_t reg[0x80];
    double odr = 0;
    uint64_t t0 = 0, produced = 0;
    int16_t fifo[32][3], out[3] = {0, 0, 0};
    int head = 0, count = 0;
    bool ovrn = false, xlda = false;

    Lsm9ds1() { reset(); }
    void reset()
    {
        memset(reg, 0, sizeof reg);
        reg[0x22] = 0x04; /* CTRL_REG8: IF_ADD_INC */
        odr = 0;
        head = count = 0;
        ovrn = xlda = false;
    }
    double full_scale() const
    {
        static const double fs[4] = {2, 16, 4, 8};
        return fs[(reg[0x20] >> 3) & 3];
    }
    bool fifo_on() const { return (reg[0x23] & 0x02) && (reg[0x2E] >> 5) != 0; }
    void retime()
    {
        static const double rates[8] = {0, 10, 50, 119, 238, 476, 952, 0};
        int g = reg[0x10] >> 5, xl = reg[0x20] >> 5;
        double r = xl == 0 ? 0 : g != 0 ? rates[g] : rates[xl];
        r *= 1.0 + cfg.odr_ppm * 1e-6;
        if (r != odr) {
            sync();
            odr = r;
            t0 = now_ns;
            produced = 0;
        }
    }
    void sync() /* produce every sample due by now */
    {
        if (odr <= 0) return;
        uint64_t due = (uint64_t)((double)(now_ns - t0) * odr * 1e-9);
        for (; produced < due; produced++) {
            uint64_t t = t0 + (uint64_t)((double)(produced + 1) * 1e9 / odr);
            int16_t s[3];
            for (int a = 0; a < 3; a++) s[a] = to_lsb(signal(a, t), full_scale());
            if (fifo_on()) {
                if (count == 32) {
                    head = (head + 1) % 32;
                    count--;
                    ovrn = true;
                    rep.imu_overwrites++;
                }
                memcpy(fifo[(head + count) % 32], s, sizeof s);
                count++;
            } else {
                memcpy(out, s, sizeof s);
                xlda = true;
            }
        }
    }
    void write_reg(uint8_t r, uint8_t v) override
    {
        sync();
        r &= 0x7F;
        if (r == 0x22 && (v & 0x01)) { /* SW_RESET */
            reset();
            return;
        }
        reg[r] = v;
        if (r == 0x2E && (v >> 5) == 0) { /* bypass: FIFO reset */
            head = count = 0;
            ovrn = false;
        }
        if (r == 0x10 || r == 0x20) retime();
    }
    size_t read_regs(uint8_t r, uint8_t *o, size_t len) override
    {
        sync();
        r &= 0x7F;
        if (r == 0x28 && len == 6) {
            int16_t *s = out;
            if (fifo_on() && count) {
                s = fifo[head];
                head = (head + 1) % 32;
                count--;
                ovrn = false;
            }
            xlda = false;
            memcpy(o, s, 6); /* little-endian, as the chip's default (BLE = 0) */
            return len;
        }
        for (size_t i = 0; i < len; i++, r++) {
            uint8_t v = reg[r & 0x7F];
            if (r == 0x0F) v = 0x68;                                 /* WHO_AM_I */
            if (r == 0x17) v = (uint8_t)(fifo_on() ? count > 0 : xlda); /* STATUS_REG XLDA */
            if (r == 0x2F) v = (uint8_t)((ovrn ? 0x40 : 0) | (count & 0x3F));
            o[i] = v;
        }
        return len;
    }
};

struct Lsm9ds1Mag : I2CDevice {
    void write_reg(uint8_t, uint8_t) override {}
    size_t read_regs(uint8_t r, uint8_t *o, size_t len) override
    {
        for (size_t i = 0; i < len; i++) o[i] = (uint8_t)((r & 0x7F) + i == 0x0F ? 0x3D : 0);
        return len;
    }
};

Lsm9ds1 lsm_ag;
Lsm9ds1Mag lsm_m;
#else
/* BMI270 (data sheet BST-BMI270-DS000): ACC_CONF 0x40 sets the accelerometer ODR
 * (1600 / 2^(12 - odr) Hz); the library's begin() leaves it at 0x98 (100 Hz). The data
 * registers always hold the latest sample; INT_STATUS's data-ready bit is consumed by
 * accelerationAvailable(). */
struct Bmi270 : I2CDevice {
    uint8_t acc_conf = 0x98;
    double odr = 0;
    uint64_t t0 = 0, produced = 0;
    int16_t latest[3] = {0, 0, 0};
    bool drdy = false;

    void retime()
    {
        int code = acc_conf & 0x0F;
        double r = code >= 1 && code <= 12 ? 1600.0 / (double)(1 << (12 - code)) : 0;
        r *= 1.0 + cfg.odr_ppm * 1e-6;
        sync();
        odr = r;
        t0 = now_ns;
        produced = 0;
    }
    void sync()
    {
        if (odr <= 0) return;
        uint64_t due = (uint64_t)((double)(now_ns - t0) * odr * 1e-9);
        for (; produced < due; produced++) {
            uint64_t t = t0 + (uint64_t)((double)(produced + 1) * 1e9 / odr);
            if (drdy) rep.imu_overwrites++; /* overwritten before it was read */
            for (int a = 0; a < 3; a++) latest[a] = to_lsb(signal(a, t), 4.0);
            drdy = true;
        }
    }
    void write_reg(uint8_t r, uint8_t v) override
    {
        if (r == 0x40) {
            acc_conf = v;
            retime();
        }
    }
    size_t read_regs(uint8_t r, uint8_t *o, size_t len) override
    {
        sync();
        for (size_t i = 0; i < len; i++) o[i] = (uint8_t)(r + i == 0 ? 0x24 : r + i == 0x40 ? acc_conf : 0);
        return len;
    }
};

Bmi270 bmi;
#endif

I2CDevice *device(uint8_t addr)
{
#if TFN_SENSE_REV2
    if (addr == 0x68) return &bmi;
#else
    if (addr == 0x6B) return &lsm_ag;
    if (addr == 0x1E) return &lsm_m;
#endif
    return NULL;
}

uint8_t reg_ptr[128];

void i2c_cost(size_t bytes, uint32_t hz)
{
    uint64_t bits = bytes * 9 + 2; /* 8 data bits + ACK per byte, start and stop */
    if (hz > cfg.i2c_max_hz) hz = cfg.i2c_max_hz; /* a slower bus than asked for */
    rep.i2c_transactions++;
    rep.i2c_bits += bits;
    if (hz > rep.i2c_hz_max) rep.i2c_hz_max = hz;
    advance(cfg.i2c_overhead_ns + bits * 1000000000ull / hz);
}

} // namespace

arduino::MbedI2C Wire1(30, 31); /* P0.14/P0.15 on the board; the pin numbers are not used */

arduino::MbedI2C::MbedI2C(int sda, int scl)
    : _sda(sda), _scl(scl), _addr(0), _tx_n(0), _rx_n(0), _rx_pos(0), _hz(100000) {}
void arduino::MbedI2C::begin() {}
void arduino::MbedI2C::end() {}
void arduino::MbedI2C::setClock(uint32_t freq) { _hz = freq; }
void arduino::MbedI2C::beginTransmission(uint8_t address)
{
    _addr = address;
    _tx_n = 0;
}
size_t arduino::MbedI2C::write(uint8_t data)
{
    if (_tx_n >= sizeof _tx) return 0;
    _tx[_tx_n++] = data;
    return 1;
}
size_t arduino::MbedI2C::write(const uint8_t *data, int len)
{
    size_t n = 0;
    for (int i = 0; i < len; i++) n += write(data[i]);
    return n;
}
uint8_t arduino::MbedI2C::endTransmission(bool)
{
    I2CDevice *d = device(_addr);
    i2c_cost(1 + _tx_n, _hz);
    if (!d) return 2; /* address NACK */
    if (_tx_n >= 1) reg_ptr[_addr & 0x7F] = _tx[0];
    for (size_t i = 1; i < _tx_n; i++) d->write_reg((uint8_t)(_tx[0] + i - 1), _tx[i]);
    return 0;
}
uint8_t arduino::MbedI2C::endTransmission(void) { return endTransmission(true); }
size_t arduino::MbedI2C::requestFrom(uint8_t address, size_t len, bool)
{
    I2CDevice *d = device(address);
    _rx_n = _rx_pos = 0;
    i2c_cost(1 + len, _hz);
    if (!d || len > sizeof _rx) return 0;
    _rx_n = d->read_regs(reg_ptr[address & 0x7F], _rx, len);
    return _rx_n;
}
size_t arduino::MbedI2C::requestFrom(uint8_t address, size_t len) { return requestFrom(address, len, true); }
int arduino::MbedI2C::read() { return _rx_pos < _rx_n ? _rx[_rx_pos++] : -1; }
int arduino::MbedI2C::available() { return (int)(_rx_n - _rx_pos); }

/* ------------------------------------------------------------------ sensor libraries
 * Each method makes the same I2C transactions as the real library's (named in the
 * headers), so the bus time is modelled; the code is written here, not copied. */

namespace {
[[maybe_unused]] bool reg_write(TwoWire *w, uint8_t dev, uint8_t reg, uint8_t v)
{
    w->beginTransmission(dev);
    w->write(reg);
    w->write(v);
    return w->endTransmission() == 0;
}
int reg_read(TwoWire *w, uint8_t dev, uint8_t reg, uint8_t *buf, size_t len)
{
    w->beginTransmission(dev);
    w->write(reg);
    if (w->endTransmission(false) != 0 || w->requestFrom(dev, len) != len) return -1;
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)w->read();
    return 0;
}
} // namespace

#if !TFN_SENSE_REV2
LSM9DS1Class IMU(Wire1);
LSM9DS1Class::LSM9DS1Class(TwoWire &wire) : continuousMode(false), _wire(&wire) {}
LSM9DS1Class::~LSM9DS1Class() {}

int LSM9DS1Class::begin()
{
    uint8_t id;
    _wire->begin();
    reg_write(_wire, 0x6B, 0x22, 0x05); /* CTRL_REG8: reset, auto-increment */
    reg_write(_wire, 0x1E, 0x21, 0x0C);
    delay(10);
    if (reg_read(_wire, 0x6B, 0x0F, &id, 1) || id != 0x68) return 0;
    if (reg_read(_wire, 0x1E, 0x0F, &id, 1) || id != 0x3D) return 0;
    reg_write(_wire, 0x6B, 0x10, 0x78); /* CTRL_REG1_G: 119 Hz */
    reg_write(_wire, 0x6B, 0x20, 0x70); /* CTRL_REG6_XL: 119 Hz, +-4 g */
    reg_write(_wire, 0x1E, 0x20, 0xB4);
    reg_write(_wire, 0x1E, 0x21, 0x00);
    reg_write(_wire, 0x1E, 0x22, 0x00);
    return 1;
}

void LSM9DS1Class::setContinuousMode()
{
    reg_write(_wire, 0x6B, 0x23, 0x02); /* CTRL_REG9: FIFO_EN */
    reg_write(_wire, 0x6B, 0x2E, 0xC0); /* FIFO_CTRL: continuous */
    continuousMode = true;
}

int LSM9DS1Class::readAcceleration(float &x, float &y, float &z)
{
    int16_t d[3];
    if (reg_read(_wire, 0x6B, 0x80 | 0x28, (uint8_t *)d, sizeof d)) {
        x = y = z = NAN;
        return 0;
    }
    x = d[0] * 4.0f / 32768.0f;
    y = d[1] * 4.0f / 32768.0f;
    z = d[2] * 4.0f / 32768.0f;
    return 1;
}

int LSM9DS1Class::accelerationAvailable()
{
    uint8_t v;
    if (continuousMode) return reg_read(_wire, 0x6B, 0x2F, &v, 1) == 0 && (v & 63);
    return reg_read(_wire, 0x6B, 0x17, &v, 1) == 0 && (v & 1);
}

HTS221Class HTS(Wire1);
HTS221Class::HTS221Class(TwoWire &wire) : _wire(&wire) {}
int HTS221Class::begin() { return 1; }
float HTS221Class::readTemperature(int units) { return units == CELSIUS ? cfg.temp_c : cfg.temp_c * 1.8f + 32.0f; }
float HTS221Class::readHumidity() { return cfg.humidity; }
#else
BoschSensorClass IMU(Wire1);
BoschSensorClass::BoschSensorClass(TwoWire &wire) : _wire(&wire) {}

int BoschSensorClass::begin()
{
    _wire->begin();
    bmi.acc_conf = 0x98; /* what bmi270_init + configure_sensor() leave (not modelled byte by byte) */
    bmi.retime();
    return 1;
}

int BoschSensorClass::accelerationAvailable()
{
    uint8_t st[2];
    if (reg_read(_wire, 0x68, 0x1C, st, 2)) return 0; /* INT_STATUS_0/1 */
    bmi.sync();
    bool r = bmi.drdy;
    bmi.drdy = false;
    return r;
}

int BoschSensorClass::readAcceleration(float &x, float &y, float &z)
{
    uint8_t raw[24];
    if (reg_read(_wire, 0x68, 0x03, raw, sizeof raw)) return 0; /* bmi2_get_sensor_data */
    x = bmi.latest[0] / 8192.0f;
    y = bmi.latest[1] / 8192.0f;
    z = bmi.latest[2] / 8192.0f;
    return 1;
}

HS300xClass HS300x(Wire1);
HS300xClass::HS300xClass(TwoWire &wire) : _wire(&wire) {}
int HS300xClass::begin() { return 1; }
float HS300xClass::readTemperature(int units) { return units == CELSIUS ? cfg.temp_c : cfg.temp_c * 1.8f + 32.0f; }
float HS300xClass::readHumidity() { return cfg.humidity; }
#endif

LPS22HBClass BARO(Wire1);
LPS22HBClass::LPS22HBClass(TwoWire &wire) : _wire(&wire) {}
int LPS22HBClass::begin() { return 1; }
float LPS22HBClass::readPressure(int units)
{
    return units == KILOPASCAL ? cfg.pressure_kpa : units == MILLIBAR ? cfg.pressure_kpa * 10.0f
                                                                       : cfg.pressure_kpa * 0.145038f;
}

/* ------------------------------------------------------------------ PDM microphone */

namespace {
struct Pdm {
    bool on = false;
    int rate = 16000;
    uint64_t t0 = 0, blocks = 0, sample = 0;
    int ready = 0; /* bytes of the last block not yet read */
    void (*cb)(void) = NULL;
    bool in_cb = false;
} pdm;

void pdm_tick()
{
    if (!pdm.on || pdm.in_cb) return;
    uint64_t period = 256ull * 1000000000ull / (uint64_t)pdm.rate; /* 256 samples per block */
    while (now_ns - pdm.t0 >= (pdm.blocks + 1) * period) {
        pdm.blocks++;
        pdm.ready = 512;
        if (pdm.cb) {
            pdm.in_cb = true;
            rep.pdm_callbacks++;
            pdm.cb();
            pdm.in_cb = false;
        }
    }
}
} // namespace

PDMClass PDM(0, 0, 0);
PDMClass::PDMClass(int dinPin, int clkPin, int pwrPin) : _dinPin(dinPin), _clkPin(clkPin), _pwrPin(pwrPin) {}
PDMClass::~PDMClass() {}
int PDMClass::begin(int channels, int sampleRate)
{
    if (channels != 1 || sampleRate <= 0) return 0;
    pdm.on = true;
    pdm.rate = sampleRate;
    pdm.t0 = now_ns;
    return 1;
}
int PDMClass::available() { return pdm.ready; }
int PDMClass::read(void *buffer, size_t size)
{
    size_t n = size > (size_t)pdm.ready ? (size_t)pdm.ready : size;
    int16_t *s = (int16_t *)buffer;
    for (size_t i = 0; i < n / 2; i++, pdm.sample++) {
        double c = cfg.pdm_hz * (double)pdm.sample / pdm.rate;
        s[i] = (int16_t)floor(32767.0 * cfg.pdm_amp * sin(2.0 * M_PI * (c - floor(c))) + 0.5);
    }
    pdm.ready -= (int)n;
    return (int)n;
}
void PDMClass::onReceive(void (*cb)(void)) { pdm.cb = cb; }

/* ------------------------------------------------------------------ flash (nRF52840, 1 MiB)
 * The program image sits at 0 as on mps2-an386; the top half, [USER_LO, 1 MiB), is the
 * emulated user flash, plain RAM in QEMU that starts erased (0xFF). */

namespace {
const uint32_t FLASH_SIZE = 0x100000, SECTOR = 4096, PAGE = 4, USER_LO = 0x80000;
uint8_t *user_mem() { return (uint8_t *)(uintptr_t)USER_LO; } /* flash address a: user_mem()[a - USER_LO] */
} // namespace

extern "C" uint32_t _data_load, _data_start, _data_end;

mbed::FlashIAP::FlashIAP() {}
mbed::FlashIAP::~FlashIAP() {}
int mbed::FlashIAP::init() { return 0; }
uint32_t mbed::FlashIAP::get_sector_size(uint32_t addr) const { return addr < FLASH_SIZE ? SECTOR : 0; }
uint32_t mbed::FlashIAP::get_flash_start() const { return 0; }
uint32_t mbed::FlashIAP::get_flash_size() const { return FLASH_SIZE; }
uint32_t mbed::FlashIAP::get_page_size() const { return PAGE; }

int mbed::FlashIAP::erase(uint32_t addr, uint32_t size)
{
    uint32_t end = addr + size;
    if (end > FLASH_SIZE || (end < FLASH_SIZE && end % SECTOR) || addr < USER_LO) {
        rep.flash_bad_ops++;
        return -1;
    }
    while (size) { /* erases the sector holding addr, as flash_erase_sector() does */
        uint32_t base = addr / SECTOR * SECTOR;
        memset(user_mem() + (base - USER_LO), 0xFF, SECTOR);
        rep.flash_erases++;
        advance(85000000ull); /* nRF52840 tERASEPAGE, 85 ms */
        size = size > SECTOR ? size - SECTOR : 0;
        addr += SECTOR;
    }
    return 0;
}

int mbed::FlashIAP::program(const void *buffer, uint32_t addr, uint32_t size)
{
    const uint8_t *src = (const uint8_t *)buffer;
    if (!buffer || addr % PAGE || addr + size > FLASH_SIZE || addr < USER_LO) {
        rep.flash_bad_ops++;
        return -1;
    }
    for (uint32_t i = 0; i < size; i++) {
        uint8_t *d = user_mem() + (addr - USER_LO) + i;
        if (src[i] & ~*d) rep.flash_dirty_bits++; /* a 0 -> 1 the hardware cannot do */
        *d &= src[i];
    }
    rep.flash_programs++;
    advance((uint64_t)(size + 3) / 4 * 41000ull); /* nRF52840 tWRITE, 41 us per word */
    return 0;
}

/* ------------------------------------------------------------------ C++ runtime bits */

void *__dso_handle = 0;
extern "C" int __cxa_atexit(void (*)(void *), void *, void *) { return 0; } /* main never returns */
void operator delete(void *) noexcept {}                                   /* no heap anywhere */
void operator delete(void *, size_t) noexcept {}
extern "C" void __cxa_pure_virtual() { emu_exit(98); }

/* ------------------------------------------------------------------ main */

namespace {
char cfg_text[4096];

void finish()
{
    static char text[1024];
    size_t n = 0;
    struct { const char *k; uint64_t v; } rows[] = {
        {"virtual_ms", now_ns / 1000000ull}, {"i2c_transactions", rep.i2c_transactions},
        {"i2c_bits", rep.i2c_bits}, {"i2c_hz_max", rep.i2c_hz_max},
        {"flash_erases", rep.flash_erases}, {"flash_programs", rep.flash_programs},
        {"flash_bad_ops", rep.flash_bad_ops}, {"flash_dirty_bits", rep.flash_dirty_bits},
        {"serial_out", rep.serial_out}, {"serial_dropped", rep.serial_dropped},
        {"serial_in", rep.serial_in}, {"serial_in_left", serial_in_len - serial_in_pos},
        {"imu_overwrites", rep.imu_overwrites}, {"pdm_callbacks", rep.pdm_callbacks},
    };
    for (auto &r : rows) {
        char num[24];
        int k = 0;
        uint64_t v = r.v;
        do { num[k++] = (char)('0' + v % 10); v /= 10; } while (v);
        size_t kl = strlen(r.k);
        memcpy(text + n, r.k, kl);
        n += kl;
        text[n++] = ' ';
        while (k) text[n++] = num[--k];
        text[n++] = '\n';
    }
    int h = emu_open("emu_report.txt", 1);
    if (h >= 0) {
        emu_write(h, text, n);
        emu_close(h);
    }
    h = emu_open("flash_out.bin", 1);
    if (h >= 0) {
        emu_write(h, user_mem(), FLASH_SIZE - USER_LO);
        emu_close(h);
    }
    if (serial_out_handle >= 0) emu_close(serial_out_handle);
}
} // namespace

extern "C" int main(void)
{
    typedef void (*ctor)(void);
    extern ctor __init_array_start[], __init_array_end[];
    uint32_t image_end = (uint32_t)(uintptr_t)&_data_load +
                         (uint32_t)((uintptr_t)&_data_end - (uintptr_t)&_data_start);
    if (image_end > USER_LO) return 5;
    for (ctor *c = __init_array_start; c < __init_array_end; c++) (*c)(); /* ours first: cfg */
    size_t n = read_file("emu.cfg", cfg_text, sizeof cfg_text - 1);
    cfg_text[n] = 0;
    parse_config(cfg_text);
    memset(user_mem(), 0xFF, FLASH_SIZE - USER_LO);
    read_file("flash_in.bin", user_mem(), FLASH_SIZE - USER_LO);
    serial_in_len = read_file("serial_in.txt", serial_in, sizeof serial_in);
    serial_out_handle = emu_open("serial_out.txt", 1);
    setup();
    while (now_ns < cfg.run_ms * 1000000ull) {
        loop();
        advance(5000); /* the core's loop between two loop() calls */
    }
    finish();
    return 0;
}
