"""Stand-in for MicroPython's `machine` on CPython: Pin, I2C and ADC backed by
simulated devices (node_firmware/sim/devices.py) instead of wires."""


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, id, mode=-1, *args, **kw):
        self.id = id


class I2C:
    """Register-level I2C: `devices` maps a 7-bit address to an object with
    read(reg, n) -> bytes and write(reg, data)."""

    def __init__(self, id, scl=None, sda=None, freq=400000, devices=None):
        self.id = id
        self.devices = devices or {}

    def _dev(self, addr):
        if addr not in self.devices:
            raise OSError(19, "ENODEV: no I2C device at 0x%02x" % addr)  # what the ESP32 port raises
        return self.devices[addr]

    def scan(self):
        return sorted(self.devices)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return bytes(self._dev(addr).read(memaddr, nbytes))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._dev(addr).write(memaddr, bytes(buf))


class ADC:
    ATTN_0DB = 0
    ATTN_11DB = 3

    def __init__(self, pin, source=None):
        self.pin = pin
        self.source = source  # callable -> float in [-1, 1]

    def atten(self, value):
        pass

    def read_u16(self):
        v = self.source() if self.source else 0.0
        v = max(-1.0, min(1.0, v))
        return int((v + 1.0) * 32767.5)


def reset():
    raise SystemExit("machine.reset() in the simulator")
