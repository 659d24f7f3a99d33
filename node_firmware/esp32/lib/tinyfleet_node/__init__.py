"""TinyFleet ESP32 node app (MicroPython). Copied to the device's /lib; the same
code runs on CPython through node_firmware/sim."""
FW_VERSION = "0.1.0"
