"""Commands for the training tier: train, export, bench train. Heavy imports stay inside."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = "sine, anomaly, keyword, weather or iris"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def train(model: str = typer.Argument(..., help=MODEL_HELP),
          epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="default: the model's recipe"),
          seed: int = typer.Option(0, "--seed"),
          data: Optional[Path] = typer.Option(None, "--data", help="bring your own data (anomaly: CSV "
                                              "windows t,ax,ay,az in normal/ and other folders; keyword: "
                                              "WAV files in one folder per word)"),
          out: Path = typer.Option(Path("models"), "--out", help="artifact root; writes OUT/MODEL/VERSION/"),
          version: Optional[int] = typer.Option(None, "--version", min=1, help="default: next free")) -> None:
    """Train MODEL, quantize it to int8, convert and export every format."""
    from training.recipes import MODELS
    if model not in MODELS:
        _fail(f"unknown model {model!r}; one of {', '.join(MODELS)}")
    if data is not None and not data.is_dir():
        _fail(f"--data {data}: not a directory")
    from training.train import train_model
    try:
        folder = train_model(model, epochs=epochs, seed=seed, data=data, out_root=out, version=version)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        _fail(str(e))
    import json
    rep = json.loads((folder / "report.json").read_text())
    typer.echo(f"wrote {folder}")
    for key, b in rep["bars"].items():
        val = "n/a" if b["value"] is None else f"{b['value']:.4f}"
        typer.echo(f"  {key}: {val} (bar {b['bar']}) {'met' if b['met'] else 'NOT MET'}")
    s = rep["sizes_bytes"]
    typer.echo(f"  int8 tflite {s['int8_tflite_per_channel']} B per-channel, {s['int8_tflite_per_tensor']} B "
               f"per-tensor ({rep['quantization']} ships); blob {s['blob']} B; TFLM arena {rep['tflm_arena_bytes']} B; "
               f"trained in {rep['train_seconds']:.1f} s")


def export(model: str = typer.Argument(..., help=MODEL_HELP),
           fmt: str = typer.Option(..., "--format", help="tflite, c, blob or micropython"),
           version: Optional[int] = typer.Option(None, "--version", help="default: newest"),
           models: Path = typer.Option(Path("models"), "--models", help="artifact root"),
           out: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the artifact folder)")) -> None:
    """Re-export a trained model as tflite, C array, blob or MicroPython module."""
    from training.export import export as do_export
    try:
        for p in do_export(model, fmt, models, version, out):
            typer.echo(str(p))
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        _fail(str(e))


def bench_train(as_json: bool = typer.Option(False, "--json", help="print JSON only"),
                models: str = typer.Option("sine,anomaly,keyword,weather,iris", "--models"),
                out: Path = typer.Option(Path("runs/bench_train"), "--out", help="scratch artifact root")) -> None:
    """Wall time to train each model (default recipe, seed 0); writes bench/results/train.json."""
    import json
    import os
    import time
    from training.train import train_model
    results = {}
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        t = time.time()
        folder = train_model(name, seed=0, out_root=out, progress=not as_json)
        rep = json.loads((folder / "report.json").read_text())
        results[name] = {"wall_seconds": round(time.time() - t, 2), "train_seconds": rep["train_seconds"],
                         "epochs": rep["epochs"], "all_bars_met": rep["all_bars_met"],
                         "int8_tflite_bytes": rep["sizes_bytes"]["int8_tflite"],
                         "blob_bytes": rep["sizes_bytes"]["blob"]}
    doc = {"bench": "train", "cpu_count": os.cpu_count(), "models": results}
    dest = Path("bench/results")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "train.json").write_text(json.dumps(doc, indent=2) + "\n")
    typer.echo(json.dumps(doc, indent=2))
