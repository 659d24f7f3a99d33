"""The node's JSON config file (/config.json on the device): load, fill defaults,
validate. A bad file stops the boot with a ConfigError that names the field."""
import binascii
import json

from contract import protocol

# field -> (type name, default); REQUIRED marks fields without a default.
REQUIRED = "required"
FIELDS = {
    "node_id": ("str", REQUIRED),
    "site": ("str", REQUIRED),
    "broker": ("str", REQUIRED),          # mqtt://host:port
    "model": ("str", REQUIRED),           # model name the node runs and accepts OTA for
    "hmac_key": ("str", REQUIRED),        # hex, fleet key that signs OTA manifests
    "node_key": ("str", None),            # hex, optional per-node key (manifests with key "node")
    "wifi_ssid": ("str", ""),
    "wifi_password": ("str", ""),
    "user": ("str", None),
    "password": ("str", None),
    "slots": ("list", ["/models/slot_a.tfmb", "/models/slot_b.tfmb"]),
    "active_pointer": ("str", "/models/active.json"),
    "state_dir": ("str", "/state"),
    "sensor": ("str", None),              # vibration | weather | sine | microphone | iris; default from the model name
    "task": ("str", None),                # regression | anomaly | classify; default from the model name
    "classes": ("list", None),            # class names for classify
    "threshold": ("num", 1.0),            # anomaly score above which result is 1
    "sample_ms": ("int", 1000),
    "batch": ("int", 8),                  # telemetry items per message
    "batch_ms": ("int", 2000),            # longest an item waits for a batch to fill
    "ring": ("int", 256),                 # results kept while the broker is unreachable
    "heartbeat_ms": ("int", 30000),
    "keepalive": ("int", 60),
    "backoff_min_ms": ("int", 500),
    "backoff_max_ms": ("int", 30000),
    "send_features": ("bool", None),      # default true, false for the microphone (1960 values)
    "max_blob": ("int", 65536),           # largest model blob an OTA may bring
    "ram_budget": ("int", None),          # arena bytes a model may need
    "ota_window": ("int", 8),             # chunks per ota/request
    "ota_timeout_ms": ("int", 5000),      # no chunk for this long: re-request (doubling, up to 16x)
    "ota_retries": ("int", 6),            # re-requests without progress before FAILED timeout
    "trial_inferences": ("int", 3),       # inferences a new model must pass before UPDATED
    "trial_sample_ms": ("int", 1000),     # sampling period while a new model is on trial
    "i2c": ("dict", {"bus": 0, "scl": 22, "sda": 21, "freq": 400000}),
    "accel_addr": ("int", 0x68),
    "bme_addr": ("int", 0x76),
    "mic_pin": ("int", 34),
    "i2s": ("dict", {"bus": 0, "sck": 32, "ws": 25, "sd": 33, "ibuf": 16000}),  # I2S microphone
    "rows_file": ("str", "/data/iris.csv"),  # iris rows to replay (built-in rows without it)
    "trend_samples": ("int", 3),          # samples back for the pressure trend (3 h at hourly)
}
SENSORS = ("vibration", "weather", "sine", "microphone", "iris")
TASKS = ("regression", "anomaly", "classify")
DEFAULT_SENSOR = {"sine": "sine", "anomaly": "vibration", "weather": "weather", "keyword": "microphone",
                  "iris": "iris"}
DEFAULT_TASK = {"sine": "regression", "anomaly": "anomaly"}
MAX_SENT_FEATURES = 512  # contract.protocol.MAX_FEATURES: the microphone's 1960 values do not fit
I2S_PINS = ("bus", "sck", "ws", "sd", "ibuf")


class ConfigError(ValueError):
    pass


def _type_ok(v, kind):
    if kind == "bool":
        return v is True or v is False
    if v is True or v is False:
        return False
    if kind == "int":
        return isinstance(v, int)
    if kind == "num":
        return isinstance(v, (int, float))
    if kind == "str":
        return isinstance(v, str)
    if kind == "list":
        return isinstance(v, list)
    if kind == "dict":
        return isinstance(v, dict)
    return False


def parse_broker(url):
    """mqtt://host[:port] -> (host, port)."""
    if not url.startswith("mqtt://"):
        raise ConfigError("config: broker must look like mqtt://host:port, got %r" % (url,))
    rest = url[7:].rstrip("/")
    host = rest
    port = 1883
    if ":" in rest:
        host, p = rest.rsplit(":", 1)
        try:
            port = int(p)
        except ValueError:
            raise ConfigError("config: broker port %r is not a number" % (p,))
    if not host or not 0 < port < 65536:
        raise ConfigError("config: broker %r needs a host and a port 1..65535" % (url,))
    return host, port


def key_bytes(hex_key, field):
    try:
        key = binascii.unhexlify(hex_key)
    except ValueError:
        raise ConfigError("config: %s must be hex" % field)
    if len(key) < 16:
        raise ConfigError("config: %s must be at least 16 bytes (32 hex digits)" % field)
    return key


def validate(raw, where="config"):
    """Raw dict -> complete config dict with defaults; ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("%s: must be a JSON object" % where)
    for name in raw:
        if name not in FIELDS:
            raise ConfigError("%s: unknown field %r (typo?)" % (where, name))
    cfg = {}
    for name in FIELDS:
        kind, default = FIELDS[name]
        if name in raw and raw[name] is not None:
            if not _type_ok(raw[name], kind):
                raise ConfigError("%s: field %r must be %s, got %r" % (where, name, kind, raw[name]))
            cfg[name] = raw[name]
        elif default == REQUIRED:
            raise ConfigError("%s: missing required field %r" % (where, name))
        else:
            cfg[name] = default
    try:
        protocol.topic(cfg["site"], cfg["node_id"], protocol.STATUS)
    except Exception as e:  # ContractError
        raise ConfigError("%s: %s" % (where, getattr(e, "detail", "site and node_id must be 1..32 of [A-Za-z0-9._-]")))
    if not 0 < len(cfg["model"]) <= 31:
        raise ConfigError("%s: model name must be 1..31 characters" % where)
    parse_broker(cfg["broker"])
    key_bytes(cfg["hmac_key"], "hmac_key")
    if cfg["node_key"] is not None:
        key_bytes(cfg["node_key"], "node_key")
    if len(cfg["slots"]) != 2 or not all(isinstance(s, str) and s.startswith("/") for s in cfg["slots"]):
        raise ConfigError("%s: slots must be two absolute file paths" % where)
    if cfg["slots"][0] == cfg["slots"][1]:
        raise ConfigError("%s: the two slots must be different files" % where)
    if cfg["sensor"] is None:
        cfg["sensor"] = DEFAULT_SENSOR.get(cfg["model"])
    if cfg["sensor"] not in SENSORS:
        raise ConfigError("%s: sensor must be one of %s (no default for model %r)"
                          % (where, ", ".join(SENSORS), cfg["model"]))
    want = DEFAULT_SENSOR.get(cfg["model"])
    if want is not None and cfg["sensor"] != want:
        raise ConfigError("%s: model %r takes the features of sensor %r, not %r (leave sensor out)"
                          % (where, cfg["model"], want, cfg["sensor"]))
    if cfg["send_features"] is None:
        cfg["send_features"] = cfg["sensor"] != "microphone"
    if cfg["send_features"] and cfg["sensor"] == "microphone":
        raise ConfigError("%s: send_features must be false for the microphone (49x40 log-mel values, "
                          "telemetry carries at most %d features)" % (where, MAX_SENT_FEATURES))
    for name in cfg["i2s"]:
        if name not in I2S_PINS:
            raise ConfigError("%s: unknown field %r in i2s (one of %s)" % (where, name, ", ".join(I2S_PINS)))
        if not _type_ok(cfg["i2s"][name], "int") or cfg["i2s"][name] < 0:
            raise ConfigError("%s: i2s.%s must be a number >= 0" % (where, name))
    if not cfg["rows_file"].startswith("/"):
        raise ConfigError("%s: rows_file must be an absolute file path" % where)
    if cfg["task"] is None:
        cfg["task"] = DEFAULT_TASK.get(cfg["model"], "classify")
    if cfg["task"] not in TASKS:
        raise ConfigError("%s: task must be one of %s" % (where, ", ".join(TASKS)))
    for name in ("sample_ms", "batch", "batch_ms", "ring", "heartbeat_ms", "keepalive",
                 "backoff_min_ms", "backoff_max_ms", "max_blob", "ota_window", "ota_timeout_ms",
                 "ota_retries", "trend_samples"):
        if cfg[name] <= 0:
            raise ConfigError("%s: %s must be > 0" % (where, name))
    if cfg["batch"] > protocol.MAX_ITEMS:
        raise ConfigError("%s: batch must be at most %d" % (where, protocol.MAX_ITEMS))
    if cfg["ota_window"] > 64:
        raise ConfigError("%s: ota_window must be at most 64" % where)
    if cfg["trial_inferences"] < 0:
        raise ConfigError("%s: trial_inferences must be >= 0" % where)
    return cfg


def load(fs, path="/config.json"):
    data = fs.read(path)
    if data is None:
        raise ConfigError("config file %s not found" % path)
    try:
        raw = json.loads(data)
    except ValueError:
        raise ConfigError("config file %s is not valid JSON" % path)
    return validate(raw, "config file " + path)
