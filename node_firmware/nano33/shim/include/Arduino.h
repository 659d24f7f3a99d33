/* TinyFleet shim -- NOT the Arduino core. Declares only what tinyfleet_nano33.ino
 * uses, with the signatures of the real ArduinoCore-mbed (arduino/ArduinoCore-mbed,
 * board "nano33ble"):
 *   millis, micros, delay, delayMicroseconds: ArduinoCore-API api/Common.h (extern "C");
 *   Serial: cores/arduino/USB/PluggableUSBSerial.h, class arduino::USBSerial, object
 *     _SerialUSB, which the Nano 33 BLE variant names Serial (SERIAL_CDC);
 *   the C headers below: the real Arduino.h reaches them through api/ArduinoAPI.h.
 * The bodies in ../emu/ run the sketch on qemu mps2-an386; they model the board,
 * they are not it. */
#ifndef TFN_SHIM_ARDUINO_H
#define TFN_SHIM_ARDUINO_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif
unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);
#ifdef __cplusplus
}

namespace arduino {

class USBSerial {
public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(uint8_t c);
    size_t write(const uint8_t *buf, size_t size); /* returns 0 while no host holds the port (DTR) */
    operator bool();                                /* real: delay(1), then connected() */
};

} // namespace arduino

extern arduino::USBSerial _SerialUSB;
#define Serial _SerialUSB

using namespace arduino;
#endif

#endif
