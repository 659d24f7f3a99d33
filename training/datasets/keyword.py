"""Keyword clips synthesized offline with espeak-ng + sox, 49x40 log-mel in numpy.

A *voice* is an espeak-ng accent plus a voice variant (klatt, f3, croak, ...).
Train/val/test are split by variant: a held-out variant is never heard in
training, in any accent. Raw synthesized audio is cached under var/keyword/;
noise, gain and shifts are applied in numpy from the seed, so a split is
deterministic per seed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import wave
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WORDS = ["yes", "no", "up", "down", "left", "right", "go", "stop"]
CLASSES = WORDS + ["_silence_", "_unknown_"]
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
                 "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero",
                 "learn", "follow", "forward", "backward", "visual", "off", "on", "yet", "know", "note"]
ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
RATE = 16000
N_FRAMES, N_MELS = 49, 40
FRAME, HOP, NFFT = 480, 320, 512
SNRS_DB = (5.0, 10.0, 20.0, 40.0)
FEATURES_VERSION = 1  # bump when augment() or log_mel() change, to invalidate cached features
CACHE = Path(os.environ.get("TINYFLEET_VAR", Path(__file__).resolve().parents[2] / "var")) / "keyword"


def variants() -> list[str]:
    """espeak-ng voice variants installed here (sorted, so the split is stable)."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[3] for line in out.splitlines()[1:] if len(line.split()) >= 4]
    return sorted(set(names))


def _synth(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance as int16 at 16 kHz, leading/trailing silence trimmed by sox."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    pcm = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-", "silence", "1", "0.01", "0.5%", "reverse",
                          "silence", "1", "0.01", "0.5%", "reverse"],
                         input=wav, capture_output=True, check=True).stdout
    return np.frombuffer(pcm, dtype="<i2")[:RATE].copy()


def _plan(seed: int, n_accents: int, n_unknown: int, n_variants: int | None = None
          ) -> list[tuple[str, str, str, int, int]]:
    """(label, word, voice, speed, pitch) for every clip to synthesize."""
    rng = np.random.default_rng(seed)
    plan = []
    for variant in variants()[:n_variants]:
        for accent in ACCENTS[:n_accents]:
            voice = f"{accent}+{variant}"
            words = [(w, w) for w in WORDS]
            words += [("_unknown_", w) for w in rng.choice(UNKNOWN_WORDS, n_unknown, replace=False)]
            for label, word in words:
                plan.append((label, word, voice, int(rng.integers(110, 220)), int(rng.integers(20, 80))))
    return plan


def synthesize(seed: int = 0, n_accents: int = 4, n_unknown: int = 2, progress: bool = False,
               n_variants: int | None = None) -> dict:
    """Synthesize (or load from cache) the raw clips: audio list + labels + voices."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"keyword dataset needs `{tool}` on PATH (apt-get install espeak-ng sox)")
    plan = _plan(seed, n_accents, n_unknown, n_variants)
    key = hashlib.sha256(repr(plan).encode()).hexdigest()[:12]
    path = CACHE / f"clips_{key}.npz"
    if path.exists():
        z = np.load(path)
        audio = np.split(z["audio"], z["offsets"][1:-1])
        return {"audio": audio, "label": list(z["label"]), "voice": list(z["voice"])}
    CACHE.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs: Iterable = pool.map(lambda p: _synth(p[1], p[2], p[3], p[4]), plan)
        if progress:
            from rich.progress import track
            jobs = track(jobs, total=len(plan), description="synthesizing clips")
        audio = list(jobs)
    offsets = np.cumsum([0] + [len(a) for a in audio])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(audio), offsets=offsets,
             label=np.array([p[0] for p in plan]), voice=np.array([p[2] for p in plan]))
    tmp.replace(path)
    return {"audio": audio, "label": [p[0] for p in plan], "voice": [p[2] for p in plan]}


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White, pink-ish or brown-ish noise, or mains hum, unit RMS."""
    kind = rng.integers(4)
    w = rng.standard_normal(n)
    if kind == 1:
        w = np.fft.irfft(np.fft.rfft(w) / np.sqrt(np.arange(n // 2 + 1) + 1.0), n)
    elif kind == 2:
        w = np.cumsum(w)
        w -= np.linspace(w[0], w[-1], n)
    elif kind == 3:
        t = np.arange(n) / RATE
        w = np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6.3)) + 0.3 * np.sin(2 * np.pi * 150 * t) + 0.2 * w
    return w / (np.sqrt(np.mean(w ** 2)) + 1e-12)


def augment(clip: np.ndarray, rng: np.random.Generator, silence: bool = False) -> np.ndarray:
    """Place the utterance at a random shift in 1 s, mix noise at a random SNR, random gain."""
    out = np.zeros(RATE)
    speech = clip.astype(np.float64) / 32768.0
    if not silence and len(speech):
        start = int(rng.integers(0, RATE - len(speech) + 1))
        out[start:start + len(speech)] = speech
        p = np.mean(speech ** 2) + 1e-12
        snr = SNRS_DB[rng.integers(len(SNRS_DB))] + rng.uniform(-2, 2)
        out += _noise(rng, RATE) * np.sqrt(p / 10 ** (snr / 10))
        out *= 10 ** rng.uniform(-1, 0.3) * 0.3 / (np.max(np.abs(out)) + 1e-9)
    else:
        out += _noise(rng, RATE) * 10 ** rng.uniform(-3.5, -1)
    return np.clip(out, -1, 1)


def _mel_matrix() -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = np.linspace(hz_to_mel(20.0), hz_to_mel(7600.0), N_MELS + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(NFFT, 1.0 / RATE)
    fb = np.zeros((N_MELS, len(bins)))
    for m in range(N_MELS):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[m] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return fb


_MEL = _mel_matrix()


def log_mel(audio: np.ndarray) -> np.ndarray:
    """49x40 log-mel (float32) of one second of audio in [-1, 1]."""
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(N_FRAMES)[:, None]
    frames = audio[idx] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2
    return np.log(power @ _MEL.T + 1e-6).astype(np.float32)


def make(seed: int = 0, n_accents: int = 4, n_unknown: int = 2, copies: int = 2,
         progress: bool = False, n_variants: int | None = None) -> dict:
    """Features split by voice variant: {'train'|'val'|'test': (x[N,49,40,1], y[N], voices)}.

    `copies` augmented versions of each training clip (different shift/noise);
    val/test get one. ~12% of clips per split are `_silence_`."""
    key = hashlib.sha256(repr((FEATURES_VERSION, seed, n_accents, n_unknown, copies, n_variants,
                               variants())).encode()).hexdigest()[:12]
    path = CACHE / f"features_{key}.npz"
    if path.exists():
        z = np.load(path)
        return {s: (z[f"{s}_x"], z[f"{s}_y"], z[f"{s}_v"]) for s in ("train", "val", "test")}
    out = _make(seed, n_accents, n_unknown, copies, progress, n_variants)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{f"{s}_{k}": out[s][i] for s in out for i, k in enumerate("xyv")})
    tmp.replace(path)
    return out


def _make(seed: int, n_accents: int, n_unknown: int, copies: int, progress: bool, n_variants: int | None) -> dict:
    raw = synthesize(seed, n_accents, n_unknown, progress, n_variants)
    rng = np.random.default_rng(seed + 1)
    names = variants()[:n_variants]
    order = rng.permutation(len(names))
    n_test = max(1, len(names) // 5)
    split_of = {}
    for rank, i in enumerate(order):
        split_of[names[i]] = "test" if rank < n_test else "val" if rank < 2 * n_test else "train"
    out = {}
    for split in ("train", "val", "test"):
        xs, ys, vs = [], [], []
        reps = copies if split == "train" else 1
        idx = [i for i, v in enumerate(raw["voice"]) if split_of[v.split("+", 1)[1]] == split]
        srng = np.random.default_rng([seed, ("train", "val", "test").index(split)])
        for _ in range(reps):
            for i in idx:
                xs.append(log_mel(augment(raw["audio"][i], srng)))
                ys.append(CLASSES.index(raw["label"][i]))
                vs.append(raw["voice"][i])
            for i in idx[:: len(WORDS) + n_unknown][: len(idx) // 8]:
                xs.append(log_mel(augment(raw["audio"][i], srng, silence=True)))
                ys.append(CLASSES.index("_silence_"))
                vs.append(raw["voice"][i])
        out[split] = (np.stack(xs)[..., None], np.array(ys, dtype=np.int64), np.array(vs))
    return out


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit 16 kHz WAV as float in [-1, 1], cut/padded to 1 s; clear error otherwise."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != RATE:
                raise ValueError(f"{path}: need mono 16-bit {RATE} Hz WAV, got {w.getnchannels()} ch, "
                                 f"{8 * w.getsampwidth()}-bit, {w.getframerate()} Hz")
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    if len(data) < 2:
        raise ValueError(f"{path}: WAV file has no samples")
    audio = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    return np.pad(audio[:RATE], (0, max(0, RATE - len(audio))))


def load_dir(data: Path | str, seed: int = 0) -> dict:
    """Bring-your-own keyword data: DIR/<word>/*.wav. Split by file order per word (60/20/20)."""
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    words = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(words) < 2:
        raise ValueError(f"{root}: need at least two word folders with WAV files, found {words}")
    rng = np.random.default_rng(seed)
    out: dict = {s: ([], [], []) for s in ("train", "val", "test")}
    for k, word in enumerate(words):
        files = sorted((root / word).glob("*.wav"))
        if not files:
            raise ValueError(f"{root / word}: no .wav files")
        files = [files[i] for i in rng.permutation(len(files))]
        for j, f in enumerate(files):
            split = "test" if j % 5 == 0 else "val" if j % 5 == 1 else "train"
            out[split][0].append(log_mel(read_wav(f)))
            out[split][1].append(k)
            out[split][2].append(f.name)
    result: dict = {}
    for s, (xs, ys, vs) in out.items():
        if not xs:
            raise ValueError(f"{root}: too few WAV files to make a {s} split (need >= 3 per word)")
        result[s] = (np.stack(xs)[..., None], np.array(ys, dtype=np.int64), np.array(vs))
    result["classes"] = words
    return result


if __name__ == "__main__":  # pre-build the clip cache
    d = make(progress=True)
    print({k: v[0].shape for k, v in d.items()})
