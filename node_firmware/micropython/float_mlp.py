"""Float dense net on plain lists, in the style of AI-ANNE (statistical-thinking/KI.ENNA).

The baseline tfmicro is measured against: weights as lists of lists of floats,
one `sum(x * w for ...)` per neuron. Not used on the inference path of a node
(floats are 32-bit on an ESP32 and its results are not bit-exact with TFLM).
"""
import json
import math


def relu(z):
    return z if z > 0 else 0.0


def linear(z):
    return z


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


ACTIVATIONS = {"relu": relu, "linear": linear, "sigmoid": sigmoid, "tanh": math.tanh}


def softmax(zs):
    top = max(zs)
    es = [math.exp(z - top) for z in zs]
    total = sum(es)
    return [e / total for e in es]


def dense_forward(inputs, weights, biases, activation):
    """weights[out][in], biases[out]; activation a name in ACTIVATIONS or 'softmax'."""
    zs = [sum(i * w_ij for i, w_ij in zip(inputs, w)) + b for w, b in zip(weights, biases)]
    if activation == "softmax":
        return softmax(zs)
    f = ACTIVATIONS[activation]
    return [f(z) for z in zs]


def dense_forward_loop(inputs, weights, biases, activation):
    """The same layer as an index loop (a hand-tuned float baseline, for an honest comparison)."""
    n = len(inputs)
    zs = []
    for w, b in zip(weights, biases):
        acc = b
        for i in range(n):
            acc += inputs[i] * w[i]
        zs.append(acc)
    if activation == "softmax":
        return softmax(zs)
    f = ACTIVATIONS[activation]
    return [f(z) for z in zs]


class Net:
    """layers: [(weights[out][in], biases[out], activation)]."""

    def __init__(self, layers):
        self.layers = layers

    def predict(self, x):
        for weights, biases, activation in self.layers:
            x = dense_forward(x, weights, biases, activation)
        return x

    def predict_loop(self, x):
        for weights, biases, activation in self.layers:
            x = dense_forward_loop(x, weights, biases, activation)
        return x


def load(path):
    """A Net from JSON {"layers": [{"w": [[...]], "b": [...], "act": "relu"}, ...]}."""
    with open(path) as f:
        spec = json.load(f)
    return Net([(layer["w"], layer["b"], layer["act"]) for layer in spec["layers"]])
