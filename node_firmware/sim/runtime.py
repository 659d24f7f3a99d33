"""Model loaders for simulated nodes, both behind the device's Model interface
(`invoke(bytes) -> bytes`, `ram_bytes`): the pure-MicroPython tfmicro (default:
the code the ESP32 runs) or the numpy reference runtime (bit-exact, faster for
big fleets)."""
RUNTIMES = ("tfmicro", "reference")


class ReferenceModel:
    """training/reference_runtime.py with tfmicro's signature."""

    def __init__(self, blob, budget=None):
        import numpy as np

        from training import reference_runtime
        self._np = np
        self.m = reference_runtime.Model(bytes(blob))
        self.ram_bytes = self.m.arena_size
        if budget is not None and self.ram_bytes > budget:
            raise ValueError("model %s needs %d bytes of arena, budget is %d" % (self.m.name, self.ram_bytes, budget))
        self.input_size = self.m.input_size
        self.output_size = self.m.output_size

    def invoke(self, data):
        if len(data) != self.input_size:
            raise ValueError("input has %d bytes, model %s takes %d" % (len(data), self.m.name, self.input_size))
        x = self._np.frombuffer(bytes(data), dtype=self._np.int8)
        return self.m.invoke(x).tobytes()


def load_model(blob, budget=None, runtime="tfmicro"):
    if runtime == "tfmicro":
        from node_firmware.micropython import tfmicro
        return tfmicro.Model(bytes(blob), budget=budget)
    if runtime == "reference":
        return ReferenceModel(blob, budget)
    raise ValueError("unknown runtime %r; one of %s" % (runtime, ", ".join(RUNTIMES)))
