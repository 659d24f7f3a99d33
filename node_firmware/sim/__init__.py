"""CPython stand-ins for the ESP32 (machine, network, umqtt.simple, flash) so the
real node app and OTA code in node_firmware/esp32/lib run against a real broker.

Importing this package puts node_firmware/esp32/lib on sys.path so the device
package imports as `tinyfleet_node`, exactly as on the board."""
import os
import sys

_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "esp32", "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)
