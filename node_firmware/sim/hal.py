"""The ESP32 hardware layer for CPython: host clock, a flash directory with a
power-cut hook, simulated I2C sensors, a paho-backed umqtt, a chosen runtime."""
import time

from tinyfleet_node.hal import Hal

from . import machine, network
from .fs import SimStorage
from .runtime import load_model
from .umqtt.simple import MQTTClient


class Board:
    """The simulated sensors wired to one node: a vibration machine (MPU6050 at
    0x68), a weather station (BME280 at 0x76) and an I2S microphone that hears
    keyword clips (`words`, default every label in turn from a per-unit start),
    built on first use."""

    def __init__(self, seed=0, unit=0, words=None):
        self.seed = seed
        self.unit = unit
        self.words = words
        self._machine = None
        self._station = None
        self._microphone = None

    @property
    def machine(self):
        if self._machine is None:
            from training.datasets.vibration import Machine
            self._machine = Machine(self.unit, self.seed)
        return self._machine

    @property
    def station(self):
        if self._station is None:
            from training.datasets.weather import Station
            self._station = Station(self.unit, self.seed)
        return self._station

    @property
    def microphone(self):
        if self._microphone is None:
            from training.datasets.keyword import CLASSES

            from .devices import SimMicrophone
            k = self.unit % len(CLASSES)
            words = self.words or CLASSES[k:] + CLASSES[:k]
            self._microphone = SimMicrophone(words, seed=self.seed * 1000 + self.unit)
        return self._microphone

    def i2c_devices(self):
        from .devices import SimBME280, SimMPU6050
        return {0x68: _Lazy(lambda: SimMPU6050(self.machine)), 0x76: _Lazy(lambda: SimBME280(self.station))}

    def hour(self):
        return self.station.hour if self._station is not None else time.gmtime()[3]


class _Lazy:
    """Builds the simulated device (and imports numpy generators) on first access."""

    def __init__(self, make):
        self.make = make
        self.dev = None

    def _d(self):
        if self.dev is None:
            self.dev = self.make()
        return self.dev

    def read(self, reg, n):
        return self._d().read(reg, n)

    def write(self, reg, data):
        self._d().write(reg, data)


class SimHal(Hal):
    board = "esp32"

    def __init__(self, root, board=None, runtime="tfmicro", cut_at=None, torn=False, free_mem=110000, cut_if=None,
                 power_lost=False):
        self.fs = SimStorage(root, cut_at, torn, cut_if)
        self._power_lost = power_lost
        self.sim_board = board or Board()
        self.runtime = runtime
        self._free = free_mem
        self._devices = None
        self._t0 = self.ticks_ms()

    def ticks_ms(self):
        return int(time.monotonic() * 1000)

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, delta):
        return t + delta

    def sleep_ms(self, ms):
        """Instant: a simulated sensor converts at once, and one process steps many
        nodes, so no node may block the others (a 10 ms BME280 wait cost 10 s per
        round at 1,000 weather nodes)."""

    def sleep_us(self, us):
        pass  # sensor pacing: the simulated window is already sampled at its rate

    def epoch_ms(self):
        return int(time.time() * 1000)

    def hour(self):
        return self.sim_board.hour()

    def free_mem(self):
        return self._free

    def wifi_connect(self, ssid, password, timeout_ms=15000):
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        wlan.connect(ssid, password)
        return wlan.isconnected()

    def i2c(self, bus, scl, sda, freq):
        if self._devices is None:
            self._devices = self.sim_board.i2c_devices()
        return machine.I2C(bus, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq, devices=self._devices)

    def adc(self, pin):
        return machine.ADC(machine.Pin(pin))

    def i2s(self, bus, sck, ws, sd, rate, ibuf):
        """The board's microphone, read like machine.I2S (16-bit mono at `rate`)."""
        if rate != 16000:
            raise ValueError("the simulated microphone plays 16 kHz clips, not %d Hz" % rate)
        return self.sim_board.microphone

    def mqtt_client(self, client_id, host, port, user, password, keepalive):
        return MQTTClient(client_id, host, port, user=user, password=password, keepalive=keepalive)

    def load_model(self, blob, budget):
        return load_model(blob, budget, self.runtime)

    def reset(self):
        machine.reset()

    def power_lost(self):
        return self._power_lost
