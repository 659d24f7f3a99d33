/* TinyFleet shim -- NOT mbed OS. Only mbed::FlashIAP (ARMmbed/mbed-os
 * drivers/include/drivers/FlashIAP.h), the methods the sketch calls. Semantics the
 * emulator keeps from drivers/source/FlashIAP.cpp and the Nordic flash HAL: program()
 * needs a page-aligned address (page = 4 bytes on the nRF52840) and pads a short tail
 * with 0xFF; erase() works on whole 4 KiB sectors; programming only clears bits. */
#ifndef TFN_SHIM_MBED_H
#define TFN_SHIM_MBED_H

#include <stdint.h>

namespace mbed {

class FlashIAP {
public:
    FlashIAP();
    ~FlashIAP();
    int init();
    int program(const void *buffer, uint32_t addr, uint32_t size);
    int erase(uint32_t addr, uint32_t size);
    uint32_t get_sector_size(uint32_t addr) const;
    uint32_t get_flash_start() const;
    uint32_t get_flash_size() const;
    uint32_t get_page_size() const;
};

} // namespace mbed

#endif
