"""Hourly weather from a Markov sky-state generator, and the weather dataset.

The hidden sky state (sunny, partly cloudy, cloudy, overcast, rain) follows a
Markov chain with long dwell times. It drives what the sensors see, with lag:
humidity relaxes towards a state target, pressure drifts down under cloud and
rain and up in fair weather (mean-reverting to the station's level), and the
diurnal temperature swing shrinks as cloud thickens. Stations differ in climate
(mean temperature, swing, humidity bias, pressure level) and sensor noise.

`Station` is also the streaming source the fleet simulator uses; `drift(...)`
shifts its climate or its sensor calibration over time.
"""
from __future__ import annotations

import numpy as np

CLASSES = ["sunny", "partly cloudy", "cloudy", "overcast", "rain"]
N_STATIONS = 6
HUMIDITY = np.array([42.0, 56.0, 69.0, 81.0, 95.0])     # % target per state
TENDENCY = np.array([0.35, 0.12, -0.12, -0.35, -0.65])   # hPa per hour
SWING = np.array([1.0, 0.75, 0.45, 0.25, 0.15])           # diurnal temperature factor
T_SHIFT = np.array([1.5, 1.0, 0.0, -1.0, -2.5])           # daily mean offset, C
# hourly transition matrix: long dwell, mostly to neighbouring states
_P = np.array([[0.955, 0.035, 0.007, 0.002, 0.001],
               [0.030, 0.940, 0.022, 0.005, 0.003],
               [0.006, 0.025, 0.935, 0.025, 0.009],
               [0.002, 0.005, 0.025, 0.940, 0.028],
               [0.001, 0.003, 0.010, 0.040, 0.946]])


class Station:
    """One weather station: `reading()` returns the next hourly reading as a dict."""

    def __init__(self, station_id: int, seed: int = 0):
        p = np.random.default_rng([seed, station_id, 0])
        self.id = station_id
        self.t_mean = p.uniform(6, 20)
        self.t_swing = p.uniform(3.5, 7.0)
        self.h_bias = p.uniform(-3, 3)
        self.p_level = p.uniform(1008, 1018)
        self.noise_t, self.noise_h, self.noise_p = p.uniform(0.2, 0.5), p.uniform(1.0, 2.5), p.uniform(0.05, 0.2)
        self.rng = np.random.default_rng([seed, station_id, 1])
        self.hour = int(p.integers(24))
        self.state = int(p.integers(5))
        self.temp, self.hum, self.pres = self.t_mean, HUMIDITY[self.state], self.p_level
        self.history = [self.pres] * 3
        self.t_offset = 0.0
        self.h_offset = 0.0

    def drift(self, temp_offset: float = 0.0, humidity_offset: float = 0.0) -> None:
        """Season change or sensor drift: add offsets to what the sensors report."""
        self.t_offset, self.h_offset = float(temp_offset), float(humidity_offset)

    def reading(self) -> dict:
        r = self.rng
        self.state = int(r.choice(5, p=_P[self.state]))
        self.hour = (self.hour + 1) % 24
        s = self.state
        diurnal = np.sin(2 * np.pi * (self.hour - 9) / 24)
        t_target = self.t_mean + T_SHIFT[s] + self.t_swing * SWING[s] * diurnal
        self.temp += (t_target - self.temp) / 2.0 + r.normal(0, 0.3)
        h_target = HUMIDITY[s] + self.h_bias - 4.0 * SWING[s] * diurnal
        self.hum += (h_target - self.hum) / 1.7 + r.normal(0, 1.0)
        self.pres += TENDENCY[s] - 0.015 * (self.pres - self.p_level) + r.normal(0, 0.15)
        self.history.append(self.pres)
        p3 = self.history[-4]
        del self.history[:-4]
        noisy_p = self.pres + r.normal(0, self.noise_p)
        return {"temp_c": self.temp + self.t_offset + r.normal(0, self.noise_t),
                "humidity_pct": float(np.clip(self.hum + self.h_offset + r.normal(0, self.noise_h), 0, 100)),
                "pressure_hpa": noisy_p, "pressure_3h_ago_hpa": p3 + r.normal(0, self.noise_p),
                "hour": self.hour, "sky": s}

    def readings(self, n: int | None = None):
        i = 0
        while n is None or i < n:
            yield self.reading()
            i += 1


def make(seed: int = 0, weeks: int = 40) -> dict:
    """Features split by time block and station.

    One station (chosen by seed) is held out entirely (`test_station`). For the
    others, whole weeks are assigned: 70% train, 10% val, 20% `test_weeks`."""
    from training.features import weather_features
    rng = np.random.default_rng(seed)
    held_out = int(rng.integers(N_STATIONS))
    week_split = rng.permutation(weeks)
    if weeks < 3:
        raise ValueError("need at least 3 weeks (train, val and test blocks)")
    n_test, n_val = max(1, weeks // 5), max(1, weeks // 10)
    split_of_week = {int(w): ("test_weeks" if i < n_test else "val" if i < n_test + n_val else "train")
                     for i, w in enumerate(week_split)}
    parts: dict = {k: [] for k in ("train", "val", "test_weeks", "test_station")}
    for sid in range(N_STATIONS):
        st = Station(sid, seed)
        rows = list(st.readings(weeks * 168))
        cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        x = weather_features(cols["temp_c"], cols["humidity_pct"], cols["pressure_hpa"],
                             cols["pressure_3h_ago_hpa"], cols["hour"])
        y = cols["sky"].astype(np.int64)
        week = np.arange(len(rows)) // 168
        for w in range(weeks):
            sel = week == w
            split = "test_station" if sid == held_out else split_of_week[w]
            parts[split].append((x[sel], y[sel], np.full(sel.sum(), sid), np.full(sel.sum(), w)))
    out: dict = {k: tuple(np.concatenate([p[i] for p in v]) for i in range(4)) for k, v in parts.items()}
    out["held_out_station"] = held_out
    return out
