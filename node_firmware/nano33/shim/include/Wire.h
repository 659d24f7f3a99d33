/* TinyFleet shim -- NOT the Arduino core. The subset of arduino::MbedI2C
 * (arduino/ArduinoCore-mbed libraries/Wire/Wire.h) that the sketch and the sensor
 * library shims use. On the Nano 33 BLE the on-board sensors sit on Wire1. */
#ifndef TFN_SHIM_WIRE_H
#define TFN_SHIM_WIRE_H

#include "Arduino.h"

namespace arduino {

class MbedI2C {
public:
    MbedI2C(int sda, int scl);
    virtual void begin();
    virtual void end();
    virtual void setClock(uint32_t freq);
    virtual void beginTransmission(uint8_t address);
    virtual uint8_t endTransmission(bool stopBit);
    virtual uint8_t endTransmission(void);
    virtual size_t requestFrom(uint8_t address, size_t len, bool stopBit);
    virtual size_t requestFrom(uint8_t address, size_t len);
    virtual size_t write(uint8_t data);
    virtual size_t write(const uint8_t *data, int len);
    virtual int read();
    virtual int available();

private: /* the emulator's state, not the real class's */
    int _sda, _scl;
    uint8_t _addr;
    uint8_t _tx[32];
    size_t _tx_n;
    uint8_t _rx[64];
    size_t _rx_n, _rx_pos;
    uint32_t _hz;
};

} // namespace arduino

extern arduino::MbedI2C Wire1;
typedef arduino::MbedI2C TwoWire;

#endif
