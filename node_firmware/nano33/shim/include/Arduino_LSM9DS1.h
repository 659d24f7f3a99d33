/* TinyFleet shim -- NOT the library. Arduino_LSM9DS1 1.1.1
 * (arduino-libraries/Arduino_LSM9DS1 src/LSM9DS1.h), the methods the sketch calls.
 * The real library: begin() resets the chip, checks WHO_AM_I, sets CTRL_REG1_G = 0x78
 * (gyro 119 Hz) and CTRL_REG6_XL = 0x70 (accel 119 Hz, +-4 g); setContinuousMode()
 * writes CTRL_REG9 = 0x02 (FIFO on) and FIFO_CTRL = 0xC0 (continuous); readAcceleration()
 * reads 6 bytes from OUT_X_XL and scales by 4 / 32768 g. All over Wire1 at 0x6B. */
#ifndef TFN_SHIM_ARDUINO_LSM9DS1_H
#define TFN_SHIM_ARDUINO_LSM9DS1_H

#include "Arduino.h"
#include "Wire.h"

class LSM9DS1Class {
public:
    LSM9DS1Class(TwoWire &wire);
    virtual ~LSM9DS1Class();
    int begin();
    void setContinuousMode();
    virtual int readAcceleration(float &x, float &y, float &z); /* g */
    virtual int accelerationAvailable();

private:
    bool continuousMode;
    TwoWire *_wire;
};

extern LSM9DS1Class IMU;

#endif
