"""Keras definitions, one function per model. Inputs have batch_size=1 so the
exported graph has no SHAPE/STRIDED_SLICE/PACK ops; training reuses the weights in
a twin with an open batch dimension (`build(name, batch=None)`)."""
import keras
from keras import layers


def sine(batch=1, noise=0.0):
    """`noise`: Gaussian noise on hidden activations while training (export builds without it),
    so the net learns to shrug off int8 rounding of its activations."""
    x = keras.Input((1,), batch_size=batch)
    h = layers.Dense(16, activation="relu")(x)
    if noise:
        h = layers.GaussianNoise(noise)(h)
    h = layers.Dense(16, activation="relu")(h)
    if noise:
        h = layers.GaussianNoise(noise)(h)
    return keras.Model(x, layers.Dense(1)(h), name="sine")


def anomaly(batch=1, n_features=24):
    """Dense autoencoder; score = mean squared reconstruction error."""
    x = keras.Input((n_features,), batch_size=batch)
    h = layers.Dense(16, activation="relu")(x)
    h = layers.Dense(6, activation="relu")(h)
    h = layers.Dense(16, activation="relu")(h)
    return keras.Model(x, layers.Dense(n_features)(h), name="anomaly")


def keyword(batch=1, n_classes=10):
    """Small DS-CNN: one strided conv, three depthwise-separable blocks, average pool."""
    x = keras.Input((49, 40, 1), batch_size=batch)
    h = layers.Conv2D(32, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    for _ in range(3):
        h = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(h)
        h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
        h = layers.Conv2D(32, (1, 1), use_bias=False)(h)
        h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
    h = layers.AveragePooling2D(pool_size=(25, 20))(h)
    h = layers.Flatten()(h)
    h = layers.Dropout(0.2)(h)
    return keras.Model(x, layers.Dense(n_classes, activation="softmax")(h), name="keyword")


def weather(batch=1, n_features=6, n_classes=5):
    x = keras.Input((n_features,), batch_size=batch)
    h = layers.Dense(24, activation="relu")(x)
    h = layers.Dense(16, activation="relu")(h)
    return keras.Model(x, layers.Dense(n_classes, activation="softmax")(h), name="weather")


# AI-ANNE's two IRIS nets as (units, activation) per layer, on 4 inputs.
IRIS = {"iris_a": [(2, "relu"), (3, "tanh"), (2, "softmax"), (1, "sigmoid")],  # net A, 8 neurons
        "iris_b": [(3, "relu"), (2, "sigmoid"), (1, "sigmoid")]}              # net B, 6 neurons


def _iris(arch, batch):
    x = h = keras.Input((4,), batch_size=batch)
    for units, act in IRIS[arch]:
        h = layers.Dense(units, activation=act)(h)
    return keras.Model(x, h, name=arch)


def iris_a(batch=1):
    """AI-ANNE net A: 4 -> 2 relu -> 3 tanh -> 2 softmax -> 1 sigmoid."""
    return _iris("iris_a", batch)


def iris_b(batch=1):
    """AI-ANNE net B: 4 -> 3 relu -> 2 sigmoid -> 1 sigmoid."""
    return _iris("iris_b", batch)


def iris_stack(arch, k):
    """`k` independent copies of an IRIS net side by side, one einsum per layer, input (batch, k, 4).

    Restarts, inner cross-validation folds and L2 strengths then train in one optimisation
    loop instead of thousands of Keras fits, each of which costs seconds of overhead for a
    net of 26 or 30 weights.
    Copy j is `[w[j] for w in stack.get_weights()]`, in the layout of `build(arch)`."""
    x = h = keras.Input((k, 4))
    fan_in = 4
    for units, act in IRIS[arch]:
        limit = (6 / (fan_in + units)) ** 0.5  # Glorot-uniform of the single net's Dense, not of the stack
        h = layers.EinsumDense("bki,kio->bko", (k, units), bias_axes="ko", activation=act,
                               kernel_initializer=keras.initializers.RandomUniform(-limit, limit))(h)
        fan_in = units
    return keras.Model(x, h, name=f"{arch}_x{k}")


BUILDERS = {"sine": sine, "anomaly": anomaly, "keyword": keyword, "weather": weather,
            "iris_a": iris_a, "iris_b": iris_b}


def build(arch: str, batch=1, **kw) -> keras.Model:
    if arch not in BUILDERS:
        raise ValueError(f"unknown model {arch!r}; one of {sorted(BUILDERS)}")
    return BUILDERS[arch](batch=batch, **kw)


def macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (Dense, Conv2D, DepthwiseConv2D)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
    return int(total)
