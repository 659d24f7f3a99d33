"""Stand-in for MicroPython's `network`: a station that is always in range."""
STA_IF = 0
AP_IF = 1


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._connected = False

    def active(self, value=None):
        if value is not None:
            self._active = bool(value)
        return self._active

    def connect(self, ssid=None, key=None):
        self._connected = self._active

    def isconnected(self):
        return self._connected

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
