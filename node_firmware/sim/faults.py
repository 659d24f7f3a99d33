"""What goes wrong in the field, for simulated nodes: `tinyfleet node sim --faults SPEC`.

SPEC is comma-separated `name=value` pairs:

  drop=P        every message, either way, is lost on the radio link with probability P.
                A lost QoS 1 publish never gets its PUBACK: the node gives up, reconnects
                and sends it again (umqtt.simple's behaviour), so nothing is lost for good.
  delay=S       inbound messages arrive up to S seconds late (uniform; order is kept).
  chunkloss=P   OTA chunks only are lost with probability P.
  corrupt=P     an OTA chunk arrives with one byte flipped with probability P.
  disconnect=R  a node's connection drops R times per node-second (the will fires).
  powercut=R    a node in the middle of an OTA update loses power R times per
                node-second and boots again from its flash.

The link faults act in the simulated umqtt client; disconnects and power cuts in the
fleet stepper. Random draws are seeded (`seed=N`), so a single-threaded run repeats."""
import random

NAMES = ("drop", "delay", "chunkloss", "corrupt", "disconnect", "powercut", "seed")


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self, drop=0.0, delay=0.0, chunkloss=0.0, corrupt=0.0, disconnect=0.0, powercut=0.0, seed=0):
        self.drop, self.delay, self.chunkloss, self.corrupt = drop, delay, chunkloss, corrupt
        self.disconnect, self.powercut = disconnect, powercut
        self.rng = random.Random(seed)
        for name in ("drop", "chunkloss", "corrupt"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FaultError("%s=%s: a probability is between 0 and 1" % (name, getattr(self, name)))
        for name in ("delay", "disconnect", "powercut"):
            if getattr(self, name) < 0:
                raise FaultError("%s=%s must not be negative" % (name, getattr(self, name)))

    @classmethod
    def parse(cls, spec):
        """`drop=0.1,powercut=0.02` -> Faults; an unknown name or a bad number is a FaultError."""
        kw = {}
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            name, sep, value = part.strip().partition("=")
            if not sep or name not in NAMES:
                raise FaultError("bad fault %r: expected NAME=VALUE with NAME one of %s" % (part, ", ".join(NAMES)))
            try:
                kw[name] = int(value) if name == "seed" else float(value)
            except ValueError:
                raise FaultError("bad fault %r: %r is not a number" % (part, value)) from None
        return cls(**kw)

    def __bool__(self):
        return any((self.drop, self.delay, self.chunkloss, self.corrupt, self.disconnect, self.powercut))

    def __repr__(self):
        on = ["%s=%g" % (n, getattr(self, n)) for n in NAMES[:-1] if getattr(self, n)]
        return ",".join(on) or "none"

    def chance(self, p):
        return p > 0 and self.rng.random() < p

    def inbound(self, kind, payload):
        """The payload as the node's radio receives it, or None when it is lost."""
        if self.chance(self.drop) or (kind == "ota/chunk" and self.chance(self.chunkloss)):
            return None
        if kind == "ota/chunk" and payload and self.chance(self.corrupt):
            i = self.rng.randrange(len(payload))
            payload = payload[:i] + bytes([payload[i] ^ 0xFF]) + payload[i + 1:]
        return payload

    def arrival_delay(self):
        return self.rng.random() * self.delay if self.delay else 0.0


NONE = Faults()
