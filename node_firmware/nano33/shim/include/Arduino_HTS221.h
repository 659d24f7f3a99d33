/* TinyFleet shim -- NOT the library. Arduino_HTS221 (arduino-libraries/Arduino_HTS221
 * src/HTS.h): the methods the sketch calls. */
#ifndef TFN_SHIM_ARDUINO_HTS221_H
#define TFN_SHIM_ARDUINO_HTS221_H

#include "Arduino.h"
#include "Wire.h"

enum { FAHRENHEIT, CELSIUS };

class HTS221Class {
public:
    HTS221Class(TwoWire &wire);
    int begin();
    float readTemperature(int units = CELSIUS);
    float readHumidity();

private:
    TwoWire *_wire;
};

extern HTS221Class HTS;

#endif
