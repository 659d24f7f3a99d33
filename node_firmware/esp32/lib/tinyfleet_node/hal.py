"""The hardware layer: everything the app needs from the board sits behind one
object, so the same app and OTA code run on an ESP32 and, through
node_firmware/sim, on CPython against a real broker."""
import gc
import json
import os
import time

_EPOCH_2000 = 946684800  # seconds between 1970 and 2000 (older ports count from 2000)


class Storage:
    """Flash files. Every mutation goes through `before(op, path)` so the
    simulation can cut the power at any of them."""

    def __init__(self, root=""):
        self.root = root

    def before(self, op, path):
        pass

    def path(self, p):
        return self.root + p

    def exists(self, p):
        try:
            os.stat(self.root + p)
            return True
        except OSError:
            return False

    def size(self, p):
        try:
            return os.stat(self.root + p)[6]
        except OSError:
            return -1

    def makedirs(self, p):
        cur = ""
        for part in p.split("/"):
            if not part:
                continue
            cur = cur + "/" + part
            if not self.exists(cur):
                try:
                    os.mkdir(self.root + cur)
                except OSError:
                    pass

    def read(self, p):
        """The whole file, or None if it is missing."""
        try:
            with open(self.root + p, "rb") as f:
                return f.read()
        except OSError:
            return None

    def open_read(self, p):
        return open(self.root + p, "rb")

    def _sync(self, f):
        f.flush()
        sync = getattr(os, "sync", None)
        if sync is not None:
            sync()

    def write_file(self, p, data):
        self.before("write", p)
        with open(self.root + p, "wb") as f:
            f.write(data)
            self._sync(f)

    def write_at(self, p, offset, data):
        """Write `data` at `offset` of an existing (or new) file, then sync."""
        self.before("write", p)
        mode = "r+b" if self.exists(p) else "wb"
        with open(self.root + p, mode) as f:
            f.seek(offset)
            f.write(data)
            self._sync(f)

    def rename(self, src, dst):
        self.before("rename", dst)
        try:
            os.rename(self.root + src, self.root + dst)
        except OSError:
            # FAT cannot rename over an existing file; littlefs (the ESP32 default) can.
            self.remove(dst)
            os.rename(self.root + src, self.root + dst)

    def remove(self, p):
        if not self.exists(p):
            return
        self.before("remove", p)
        try:
            os.remove(self.root + p)
        except OSError:
            pass

    def write_atomic(self, p, data):
        """New file, sync, rename: a reader sees the old or the new content, never a mix."""
        self.write_file(p + ".tmp", data)
        self.rename(p + ".tmp", p)

    def read_json(self, p):
        """A JSON file as written by write_json, or None if missing or torn."""
        data = self.read(p)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def write_json(self, p, obj):
        self.write_atomic(p, json.dumps(obj).encode())


class Hal:
    """An ESP32 running MicroPython. node_firmware/sim/hal.py overrides the
    board-facing methods for CPython."""

    board = "esp32"

    def __init__(self, root=""):
        self.fs = Storage(root)
        self._t0 = self.ticks_ms()

    # time
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, t, delta):
        return time.ticks_add(t, delta)  # ticks wrap (2**30 ms on the ESP32, ~12 days)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def sleep_us(self, us):
        time.sleep_us(us)

    def epoch_ms(self):
        t = time.time()
        if time.gmtime(0)[0] == 2000:
            t += _EPOCH_2000
        return int(t) * 1000

    def hour(self):
        return time.gmtime()[3]

    def uptime_s(self):
        return self.ticks_diff(self.ticks_ms(), self._t0) // 1000

    def free_mem(self):
        gc.collect()
        return gc.mem_free()

    # board
    def wifi_connect(self, ssid, password, timeout_ms=15000):
        """True once the station has an address (no-op without an SSID, e.g. Ethernet)."""
        if not ssid:
            return True
        import network
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if wlan.isconnected():
            return True
        wlan.connect(ssid, password)
        start = self.ticks_ms()
        while not wlan.isconnected():
            if self.ticks_diff(self.ticks_ms(), start) > timeout_ms:
                return False
            self.sleep_ms(100)
        try:
            import ntptime
            ntptime.settime()
        except Exception:
            pass
        return True

    def i2c(self, bus, scl, sda, freq):
        import machine
        return machine.I2C(bus, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)

    def adc(self, pin):
        import machine
        a = machine.ADC(machine.Pin(pin))
        a.atten(machine.ADC.ATTN_11DB)
        return a

    def i2s(self, bus, sck, ws, sd, rate, ibuf):
        """An I2S microphone, 16-bit mono at `rate`; readinto(buf) blocks until buf is full."""
        import machine
        return machine.I2S(bus, sck=machine.Pin(sck), ws=machine.Pin(ws), sd=machine.Pin(sd),
                           mode=machine.I2S.RX, bits=16, format=machine.I2S.MONO, rate=rate, ibuf=ibuf)

    def mqtt_client(self, client_id, host, port, user, password, keepalive):
        from umqtt.simple import MQTTClient
        return MQTTClient(client_id, host, port, user=user, password=password, keepalive=keepalive)

    def load_model(self, blob, budget):
        """An int8 model with .invoke(bytes) -> bytes (node_firmware/micropython/tfmicro.py)."""
        import tfmicro  # type: ignore[import-not-found]
        return tfmicro.Model(blob, budget=budget)

    def reset(self):
        import machine
        machine.reset()

    def power_lost(self):
        """True when this boot follows a loss of power. The ESP32 port reports a
        power-on and a brown-out both as PWRON_RESET; a crash (machine.reset, panic)
        or a watchdog reset is something else."""
        import machine
        return machine.reset_cause() == machine.PWRON_RESET
