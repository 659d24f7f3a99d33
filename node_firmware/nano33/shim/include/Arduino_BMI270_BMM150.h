/* TinyFleet shim -- NOT the library. Arduino_BMI270_BMM150
 * (arduino-libraries/Arduino_BMI270_BMM150 src/BoschSensorClass.h), the methods the
 * sketch calls. The real begin() runs the Bosch API's bmi270_init and
 * configure_sensor(): accelerometer 100 Hz (ACC_CONF = 0x98), +-4 g; readAcceleration()
 * reads 24 bytes from register 0x03 (bmi2_get_sensor_data) and scales by 1/8192 g;
 * accelerationAvailable() reads INT_STATUS (2 bytes). All over Wire1 at 0x68. */
#ifndef TFN_SHIM_ARDUINO_BMI270_BMM150_H
#define TFN_SHIM_ARDUINO_BMI270_BMM150_H

#include "Arduino.h"
#include "Wire.h"

class BoschSensorClass {
public:
    BoschSensorClass(TwoWire &wire);
    int begin();
    virtual int readAcceleration(float &x, float &y, float &z); /* g */
    virtual int accelerationAvailable();

private:
    TwoWire *_wire;
};

extern BoschSensorClass IMU;

#endif
