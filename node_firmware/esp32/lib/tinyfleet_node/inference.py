"""One int8 model on the node: quantize features with the blob's input scale,
invoke the runtime, dequantize and turn the output into (result, score)."""
import math

from contract import blob as blobfmt


class InferenceError(Exception):
    pass


def _size(dims):
    return dims[0] * dims[1] * dims[2] * dims[3]


class Inference:
    def __init__(self, hal, blob, budget, task, classes=None, threshold=1.0):
        self.hdr = blobfmt.parse(blob)
        ts = blobfmt.tensors(blob, self.hdr)
        self.n_in = _size(ts[self.hdr["input"]][1])
        self.n_out = _size(ts[self.hdr["output"]][1])
        self.model = hal.load_model(blob, budget)
        self.name = self.hdr["name"]
        # The blob's own metadata wins: an OTA update brings the rule for its weights.
        meta = self.hdr.get("meta") or {}
        self.task = meta.get("task", task)
        self.classes = meta.get("classes", classes)
        self.threshold = meta.get("threshold", threshold)

    def quantize(self, feats):
        if len(feats) != self.n_in:
            raise InferenceError("model %s takes %d inputs, the sensor gave %d" % (self.name, self.n_in, len(feats)))
        s = self.hdr["input_scale"]
        zp = self.hdr["input_zero_point"]
        out = bytearray(self.n_in)
        for i in range(self.n_in):
            q = int(math.floor(feats[i] / s + 0.5)) + zp
            q = -128 if q < -128 else (127 if q > 127 else q)
            out[i] = q & 0xFF
        return bytes(out)

    def _dequantize(self, raw, scale, zp):
        return [((b - 256 if b > 127 else b) - zp) * scale for b in raw]

    def run(self, feats, truth=None):
        """(result, score); InferenceError if the model fails or answers with the wrong size."""
        q = self.quantize(feats)
        try:
            raw = self.model.invoke(q)
        except Exception as e:
            raise InferenceError("invoke failed: %r" % (e,))
        if raw is None or len(raw) != self.n_out:
            raise InferenceError("model %s answered %s bytes, expected %d"
                                 % (self.name, None if raw is None else len(raw), self.n_out))
        y = self._dequantize(raw, self.hdr["output_scale"], self.hdr["output_zero_point"])
        if self.task == "regression":
            v = y[0]
            return round(v, 5), (round(abs(v - truth), 5) if truth is not None else 0.0)
        if self.task == "anomaly":
            x = self._dequantize(q, self.hdr["input_scale"], self.hdr["input_zero_point"])
            if len(x) != len(y):
                raise InferenceError("anomaly model output size %d != input size %d" % (len(y), len(x)))
            err = 0.0
            for i in range(len(x)):
                d = y[i] - x[i]
                err += d * d
            err = err / len(x)
            return (1 if err > self.threshold else 0), round(err, 5)
        if len(y) == 1 and self.classes and len(self.classes) == 2:
            # one sigmoid unit: the probability of the second class (iris: virginica)
            p = y[0]
            if p >= 0.5:
                return self.classes[1], round(p, 5)
            return self.classes[0], round(1.0 - p, 5)
        best = 0
        for i in range(1, len(y)):
            if y[i] > y[best]:
                best = i
        result = best
        if self.classes and best < len(self.classes):
            result = self.classes[best]
        return result, round(y[best], 5)
