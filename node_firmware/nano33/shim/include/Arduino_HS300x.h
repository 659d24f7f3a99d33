/* TinyFleet shim -- NOT the library. Arduino_HS300x (arduino-libraries/Arduino_HS300x
 * src/HS300x.h): the methods the sketch calls. */
#ifndef TFN_SHIM_ARDUINO_HS300X_H
#define TFN_SHIM_ARDUINO_HS300X_H

#include "Arduino.h"
#include "Wire.h"

enum { FAHRENHEIT, CELSIUS };

class HS300xClass {
public:
    HS300xClass(TwoWire &wire);
    int begin();
    float readTemperature(int units = CELSIUS);
    float readHumidity();

private:
    TwoWire *_wire;
};

extern HS300xClass HS300x;

#endif
