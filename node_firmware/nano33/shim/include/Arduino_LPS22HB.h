/* TinyFleet shim -- NOT the library. Arduino_LPS22HB (arduino-libraries/Arduino_LPS22HB
 * src/BARO.h): the methods the sketch calls. readPressure() defaults to kPa. */
#ifndef TFN_SHIM_ARDUINO_LPS22HB_H
#define TFN_SHIM_ARDUINO_LPS22HB_H

#include "Arduino.h"
#include "Wire.h"

enum { PSI, MILLIBAR, KILOPASCAL };

class LPS22HBClass {
public:
    LPS22HBClass(TwoWire &wire);
    int begin();
    float readPressure(int units = KILOPASCAL);

private:
    TwoWire *_wire;
};

extern LPS22HBClass BARO;

#endif
