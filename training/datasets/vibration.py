"""3-axis vibration of rotating machines, and the anomaly dataset built from it.

Physics, per window of 256 samples at 1 kHz:
- shaft 1x and 2x harmonics at the running speed, amplitude grows with load;
- a healthy bearing's faint roughness: impulses at the outer-race defect
  frequency (BPFO) ringing the housing resonance, modulated by the shaft;
- occasional external knocks (normal operation, too);
- broadband sensor noise and the 1 g of gravity on z.
Faults, with a severity in [0, 1]: `bearing` (strong BPFO impulses), `looseness`
(many 1x harmonics plus half-orders, clipped), `imbalance` (1x grows),
`misalignment` (2x and 3x grow, mostly axial). Each machine has its own speed,
resonance, damping, BPFO ratio, axis coupling and noise floor.

`Machine` is also the streaming source the fleet simulator uses: it yields
windows, its regime (speed, load) can change and a fault can develop over time,
which is the drift that makes the cloud retrain.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from node_firmware.micropython.features import RATE_HZ, WINDOW

FAULTS = ("bearing", "looseness", "imbalance", "misalignment")
N_MACHINES = 14
N_UNSEEN = 3


class Machine:
    """One machine: `window()` returns the next [WINDOW, 3] float array in g."""

    def __init__(self, machine_id: int, seed: int = 0):
        p = np.random.default_rng([seed, machine_id, 0])
        self.id = machine_id
        self.f0 = p.uniform(18, 35)                 # nominal shaft speed, Hz
        self.f_res = p.uniform(180, 420)            # housing resonance, Hz
        self.zeta = p.uniform(0.03, 0.08)           # damping ratio
        self.bpfo = p.uniform(3.0, 5.2)             # outer-race defect order
        self.a1 = p.uniform(0.15, 0.5)              # 1x amplitude at nominal load, g
        self.r2 = p.uniform(0.1, 0.4)               # 2x / 1x
        self.mix = p.uniform(0.3, 1.0, size=3) * np.array([1.0, 0.8, 0.5])  # radial x, y; axial z
        self.phase = p.uniform(0, 2 * np.pi, size=3)
        self.noise = p.uniform(0.02, 0.06)
        self.rough = p.uniform(0.01, 0.04)          # healthy bearing impulse amplitude
        self.knock_rate = p.uniform(0.02, 0.06)     # knocks per window
        self.rng = np.random.default_rng([seed, machine_id, 1])
        self.speed = 1.0                            # x nominal
        self.load = 0.6                             # 0..1
        self.fault: str | None = None
        self.severity = 0.0
        self.fault_rate = 0.0
        self.wander = True                          # small random walk of speed and load

    def set_regime(self, speed: float | None = None, load: float | None = None) -> None:
        """Change the operating point (speed as a factor of nominal, load 0..1)."""
        if speed is not None:
            self.speed = float(speed)
        if load is not None:
            self.load = float(np.clip(load, 0.0, 1.0))

    def set_surroundings(self, noise: float = 1.0, knocks: float = 1.0) -> None:
        """Scale the broadband noise floor and the rate of external knocks: new machinery
        next door. The machine stays healthy, but its windows no longer look like the
        ones the anomaly model was trained on."""
        self.noise *= noise
        self.knock_rate *= knocks

    def set_fault(self, kind: str | None, severity: float = 1.0) -> None:
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        self.fault, self.severity, self.fault_rate = kind, float(severity), 0.0

    def develop_fault(self, kind: str, per_window: float = 0.002) -> None:
        """Start a fault at severity 0 that grows by `per_window` each window, up to 1."""
        self.set_fault(kind, 0.0)
        self.fault_rate = float(per_window)

    def windows(self, n: int | None = None):
        """Yield `n` windows (forever if None)."""
        i = 0
        while n is None or i < n:
            yield self.window()
            i += 1

    def _ring(self, t_hits: np.ndarray, amps: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Sum of decaying resonance rings started at `t_hits` (s) with amplitudes `amps`."""
        out = np.zeros_like(t)
        w = 2 * np.pi * self.f_res
        for th, a in zip(t_hits, amps):
            dt = t - th
            m = dt >= 0
            out[m] += a * np.exp(-self.zeta * w * dt[m]) * np.sin(w * dt[m])
        return out

    def window(self) -> np.ndarray:
        r = self.rng
        if self.wander:
            self.speed = float(np.clip(self.speed + r.normal(0, 0.01), 0.85, 1.15))
            self.load = float(np.clip(self.load + r.normal(0, 0.03), 0.2, 1.0))
        if self.fault_rate:
            self.severity = min(1.0, self.severity + self.fault_rate)
        t = np.arange(WINDOW) / RATE_HZ
        f = self.f0 * self.speed * (1 + r.normal(0, 0.003))
        ph = r.uniform(0, 2 * np.pi)
        amp1 = self.a1 * (0.8 + 0.4 * self.load) * self.speed ** 2
        amp2 = amp1 * self.r2
        radial = [amp1, amp2, 0.0]
        axial = [0.3 * amp1, 0.8 * amp2, 0.0]
        s, kind = self.severity, self.fault
        if kind == "imbalance":
            radial[0] *= 1 + 4.0 * s
        if kind == "misalignment":
            radial[1] *= 1 + 2.0 * s
            axial[1] *= 1 + 4.0 * s
            axial[2] = amp1 * 0.8 * s
            radial[2] = amp1 * 0.3 * s
        sig = np.zeros((WINDOW, 3))
        for ax in range(3):
            amps = axial if ax == 2 else radial
            for k, a in enumerate(amps, start=1):
                sig[:, ax] += self.mix[ax] * a * np.sin(2 * np.pi * k * f * t + k * ph + self.phase[ax] * k)
        # bearing impulses (faint when healthy), modulated by the shaft
        rough = self.rough + (0.6 * s if kind == "bearing" else 0.0)
        period = 1.0 / (self.bpfo * f)
        t_hits = np.arange(r.uniform(-period, 0), t[-1], period) + r.normal(0, 0.02 * period, 1)
        hit_amps = rough * (1 + 0.5 * np.cos(2 * np.pi * f * t_hits + ph)) * r.uniform(0.7, 1.3, len(t_hits))
        ring = self._ring(t_hits, hit_amps, t)
        sig += ring[:, None] * np.array([1.0, 0.7, 0.4]) * self.mix
        if kind == "looseness":
            loose = np.zeros(WINDOW)
            for k in range(1, 9):
                loose += (1.0 * s * amp1 / np.sqrt(k)) * np.sin(2 * np.pi * k * f * t + r.uniform(0, 6.3))
            for half in (0.5, 1.5, 2.5):
                loose += 0.25 * s * amp1 * np.sin(2 * np.pi * half * f * t + r.uniform(0, 6.3))
            lim = amp1 * (1.2 - 0.5 * s)
            sig[:, :2] = np.clip(sig[:, :2] + loose[:, None] * self.mix[:2], -lim * 1.5, lim * 1.5)
            rattle = np.arange(r.uniform(-1 / f, 0), t[-1], 1 / f)
            sig += self._ring(rattle, 0.3 * s * r.uniform(0.5, 1.5, len(rattle)), t)[:, None] * self.mix
        n_knocks = r.poisson(self.knock_rate)
        if n_knocks:
            ring = self._ring(r.uniform(0, t[-1], n_knocks), r.uniform(0.1, 0.4, n_knocks), t)
            sig += ring[:, None] * r.uniform(0.3, 1.0, 3)
        sig += r.normal(0, self.noise, sig.shape)
        sig[:, 2] += 1.0
        return sig.astype(np.float32)


def split_machines(seed: int = 0) -> tuple[list[int], list[int]]:
    """(seen, unseen) machine ids: the anomaly model trains on the seen ones only."""
    order = np.random.default_rng(seed).permutation(N_MACHINES)
    return sorted(order[N_UNSEEN:].tolist()), sorted(order[:N_UNSEEN].tolist())


def make(seed: int = 0, n_normal: int = 400, n_fault: int = 60, n_unseen: int = 200) -> dict:
    """Windows and features split by machine and by time block.

    Seen machines: first 75% of each normal stream -> train, next 12.5% -> val,
    last 12.5% -> test, plus `n_fault` faulty windows each (test). Unseen machines
    only appear in `test_unseen` (normal and faulty). Labels: 0 normal, 1 anomalous."""
    from training.features import vibration_features
    seen, unseen = split_machines(seed)
    parts: dict = {k: ([], [], []) for k in ("train", "val", "test_seen", "test_unseen")}

    def add(split, wins, label, mid):
        parts[split][0].append(np.stack(wins))
        parts[split][1].append(np.full(len(wins), label))
        parts[split][2].append(np.full(len(wins), mid))

    for mid in seen + unseen:
        m = Machine(mid, seed)
        normal = list(m.windows(n_normal if mid in seen else n_unseen))
        if mid in seen:
            a, b = int(0.75 * n_normal), int(0.875 * n_normal)
            add("train", normal[:a], 0, mid)
            add("val", normal[a:b], 0, mid)
            add("test_seen", normal[b:], 0, mid)
        else:
            add("test_unseen", normal, 0, mid)
        nf = n_fault if mid in seen else n_unseen
        faulty = []
        for i in range(nf):
            m.set_fault(FAULTS[i % len(FAULTS)], m.rng.uniform(0.3, 1.0))
            faulty.append(m.window())
        m.set_fault(None)
        add("test_seen" if mid in seen else "test_unseen", faulty, 1, mid)
    out: dict = {}
    for k, (w, y, mids) in parts.items():
        wins = np.concatenate(w)
        out[k] = (vibration_features(wins), np.concatenate(y), np.concatenate(mids))
    out["machines"] = {"seen": seen, "unseen": unseen}
    return out


def read_csv_window(path: Path) -> np.ndarray:
    """One CSV with header t,ax,ay,az sampled at RATE_HZ -> [k, WINDOW, 3] windows."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read CSV ({e})") from None
    if not rows or [c.strip() for c in rows[0]] != ["t", "ax", "ay", "az"]:
        raise ValueError(f"{path}: first line must be the header t,ax,ay,az")
    values = []
    for line, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        if len(r) != 4:
            raise ValueError(f"{path}: line {line} has {len(r)} columns, need 4 columns t,ax,ay,az")
        try:
            values.append([float(c) for c in r])
        except ValueError as e:
            raise ValueError(f"{path}: line {line}: non-numeric value ({e})") from None
    data = np.array(values, dtype=np.float64).reshape(-1, 4)
    if len(data) < WINDOW:
        raise ValueError(f"{path}: {len(data)} rows, need at least {WINDOW} (one window)")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: contains NaN or infinite values")
    dt = np.diff(data[:, 0])
    if np.any(dt <= 0) or abs(np.median(dt) * RATE_HZ - 1) > 0.05:
        raise ValueError(f"{path}: t must increase at {RATE_HZ} Hz (median step {np.median(dt):.6g} s)")
    k = len(data) // WINDOW
    return data[: k * WINDOW, 1:].reshape(k, WINDOW, 3)


def load_dir(data: Path | str, seed: int = 0) -> dict:
    """Bring-your-own vibration data: DIR/normal/*.csv and DIR/<other>/*.csv (anomalous).

    Normal files are split by file order (70% train, 15% val, 15% test);
    anomalous files all go to test."""
    from training.features import vibration_features
    root = Path(data)
    if not (root / "normal").is_dir():
        raise ValueError(f"{root}: needs a normal/ folder of CSV windows (t,ax,ay,az)")
    normal = sorted((root / "normal").glob("*.csv"))
    if len(normal) < 3:
        raise ValueError(f"{root / 'normal'}: need at least 3 CSV files, found {len(normal)}")
    rng = np.random.default_rng(seed)
    normal = [normal[i] for i in rng.permutation(len(normal))]
    a, b = max(1, int(0.7 * len(normal))), max(2, int(0.85 * len(normal)))
    groups = {"train": normal[:a], "val": normal[a:b], "test_seen": normal[b:]}
    out: dict = {}
    for split, files in groups.items():
        wins = [read_csv_window(f) for f in files]
        x = vibration_features(np.concatenate(wins))
        out[split] = (x, np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=np.int64))
    bad = [p for d in sorted(root.iterdir()) if d.is_dir() and d.name != "normal" for p in sorted(d.glob("*.csv"))]
    if bad:
        x = vibration_features(np.concatenate([read_csv_window(f) for f in bad]))
        xs, ys, ms = out["test_seen"]
        out["test_seen"] = (np.concatenate([xs, x]), np.concatenate([ys, np.ones(len(x), dtype=np.int64)]),
                            np.concatenate([ms, np.zeros(len(x), dtype=np.int64)]))
    out["machines"] = {"seen": [0], "unseen": []}
    return out
