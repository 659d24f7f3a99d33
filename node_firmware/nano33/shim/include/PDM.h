/* TinyFleet shim -- NOT the library. PDMClass of arduino/ArduinoCore-mbed
 * libraries/PDM/src/PDM.h: the methods the sketch calls. onReceive's callback runs
 * in interrupt context on the board (in the emulator: when virtual time advances). */
#ifndef TFN_SHIM_PDM_H
#define TFN_SHIM_PDM_H

#include "Arduino.h"

class PDMClass {
public:
    PDMClass(int dinPin, int clkPin, int pwrPin);
    virtual ~PDMClass();
    int begin(int channels, int sampleRate);
    virtual int available();
    virtual int read(void *buffer, size_t size);
    void onReceive(void (*)(void));

private:
    int _dinPin, _clkPin, _pwrPin;
};

extern PDMClass PDM;

#endif
