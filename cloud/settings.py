"""Cloud settings: one dataclass, read from TINYFLEET_* environment variables so that
`cloud serve` and the worker process it spawns see exactly the same values."""
from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("viewer", "operator", "gateway")


def parse_tokens(text: str) -> dict[str, str]:
    """"viewer:t1,operator:t2,gateway:t3" -> {token: role}; ValueError names a bad pair."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        role, sep, token = pair.partition(":")
        if not sep or role not in ROLES or not token:
            raise ValueError(f"bad token entry {pair!r}: expected role:token with role in {ROLES}")
        out[token] = role
    return out


def dev_tokens() -> dict[str, str]:
    return {secrets.token_urlsafe(18): role for role in ROLES}


def format_tokens(tokens: dict[str, str]) -> str:
    return ",".join(f"{role}:{token}" for token, role in tokens.items())


@dataclass
class Settings:
    db_url: str = ""                       # empty: SQLite file in data_dir
    models_dir: Path = Path("models")      # committed artifact folders models/<name>/<version>/
    data_dir: Path = Path("var/cloud")     # database, retrained artifacts, job data
    tokens: dict = field(default_factory=dict)   # token -> role
    fleet_key: str = ""                    # hex; empty: generated once and kept in the database
    node_keys: dict = field(default_factory=dict)  # node id -> hex key (per-node signed manifests)
    max_body_bytes: int = 8 * 1024 * 1024  # raw (possibly gzipped) ingest body
    max_inflated_bytes: int = 32 * 1024 * 1024
    online_window_s: float = 120.0         # a node seen within this is online (unless it said offline)
    anomaly_window_s: float = 3600.0       # window of the per-node anomaly rate
    engine_tick_s: float = 0.25            # deployment engine + drift check period
    sse_poll_s: float = 0.2                # SSE streams poll the event table this often
    ota_timeout_s: float = 600.0           # a node that is not final after this is FAILED(timeout)
    chunk_size: int = 1024                 # OTA chunk size put in manifests
    golden_count: int = 3                  # golden vectors per manifest
    drift_enabled: bool = True
    drift_threshold: float = 0.3           # site anomaly rate that starts a retraining job
    drift_min_samples: int = 50
    drift_window_s: float = 900.0
    drift_cooldown_s: float = 3600.0       # at most one automatic job per (model, site) per cooldown
    drift_check_s: float = 5.0             # how often the drift rule looks
    train_epochs: int = 0                  # 0: the recipe's own epochs; tests set a few
    train_small: bool = False              # fast path for tests
    train_seed: int = 0
    regress_margin: float = 0.02           # a candidate may lose at most this against the active version
    min_auc: float = 0.85                  # anomaly held-out bar (MLPerf Tiny's AD target)
    max_false_alarm: float = 0.2           # anomaly held-out false alarms on normal windows
    min_detection: float = 0.5             # anomaly held-out: share of faulty windows flagged at the threshold
    job_data_limit: int = 5000             # telemetry rows a job takes at most
    trainer: str = "training.train:train_model"   # pluggable training entry point
    worker_poll_s: float = 0.5
    event_keep_s: float = 24 * 3600.0

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'tinyfleet.db'}"

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        """Fields from TINYFLEET_<FIELD> (TINYFLEET_DB_URL, TINYFLEET_TOKENS, ...), then overrides."""
        env = os.environ if env is None else env
        kw = {}
        for f in dataclasses.fields(cls):
            raw = env.get("TINYFLEET_" + f.name.upper())
            if raw is None:
                continue
            if f.name == "tokens":
                kw[f.name] = parse_tokens(raw)
            elif f.name == "node_keys":
                kw[f.name] = dict(p.split(":", 1) for p in raw.split(",") if ":" in p)
            elif f.name in ("models_dir", "data_dir"):
                kw[f.name] = Path(raw)
            elif f.type in ("bool", bool):
                kw[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif f.type in ("int", int):
                kw[f.name] = int(raw)
            elif f.type in ("float", float):
                kw[f.name] = float(raw)
            else:
                kw[f.name] = raw
        kw.update(overrides)
        return cls(**kw)

    def to_env(self) -> dict[str, str]:
        """The inverse of from_env, for the worker subprocess."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "tokens":
                v = format_tokens(v)
            elif f.name == "node_keys":
                v = ",".join(f"{k}:{h}" for k, h in v.items())
            elif isinstance(v, bool):
                v = "1" if v else "0"
            out["TINYFLEET_" + f.name.upper()] = str(v)
        return out
