"""`tinyfleet parity`: the same int8 inputs through TFLM and every TinyFleet runtime.

A runtime is a `run_batch(blob: bytes, inputs: np.ndarray) -> np.ndarray`
function (N inputs -> N flat int8 outputs) named "module:function" in RUNTIMES;
one whose module is not there yet is reported "not available", not a failure.
Given a .tflite the golden outputs come from TFLM; given a blob, from the
numpy reference runtime.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import typer

RUNTIMES: list[tuple[str, str]] = [
    ("reference", "training.reference_runtime:run_batch"),
    ("micropython", "node_firmware.micropython_host:run_batch"),
    ("c", "node_firmware.c_host:run_batch"),
    ("c-codegen", "node_firmware.c_host:run_batch_codegen"),
    ("c-m4", "node_firmware.c_host:run_batch_m4"),
]


class Unavailable(Exception):
    """The runtime's module or function does not exist (yet)."""


def resolve(spec: str) -> Callable:
    """'module:function' -> the function; Unavailable if the module or function is missing."""
    module_name, _, func = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only the runtime's own module missing means "not there yet";
        # a missing dependency inside it is a real error.
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise Unavailable("module %s not found" % module_name) from None
        raise
    fn = getattr(module, func, None)
    if fn is None:
        raise Unavailable("%s has no function %s" % (module_name, func))
    return fn


def _load(model: str) -> tuple[bytes, bytes | None, str]:
    """-> (blob, tflite or None, error). Converts a .tflite."""
    from training.tflite_to_blob import ConversionError, convert
    path = Path(model)
    if not path.is_file():
        return b"", None, "no such file: %s" % model
    data = path.read_bytes()
    if data[:4] == b"TFMB":
        return data, None, ""
    if data[4:8] != b"TFL3":
        return b"", None, "%s is neither a model blob (TFMB) nor a .tflite (TFL3)" % model
    try:
        return convert(data, path.stem[:31] or "model", 1), data, ""
    except ConversionError as e:
        return b"", data, "cannot convert %s: %s" % (model, e)


def compare(blob: bytes, tflite: bytes | None, n_inputs: int, seed: int,
            runtimes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Run every runtime on the same random int8 inputs; count mismatching output bytes."""
    import numpy as np

    from contract import blob as B
    hdr = B.parse(blob)
    dims = B.tensors(blob, hdr)[hdr["input"]][1]
    size = dims[0] * dims[1] * dims[2] * dims[3]
    inputs = np.random.default_rng(seed).integers(-128, 128, (n_inputs, size), dtype=np.int8)
    if tflite is not None:
        from training import tflm
        golden, golden_name = tflm.run_batch(tflite, inputs), "tflm"
    else:
        from training import reference_runtime
        golden, golden_name = reference_runtime.run_batch(blob, inputs), "reference"
    result: dict[str, Any] = {"model": hdr["name"], "golden": golden_name, "inputs": n_inputs, "seed": seed,
                              "blob_size": hdr["blob_size"], "output_bytes": int(golden.size), "runtimes": []}
    for name, spec in runtimes or RUNTIMES:
        row: dict[str, Any] = {"name": name, "target": spec}
        try:
            out = np.asarray(resolve(spec)(blob, inputs))
        except Unavailable as e:
            row.update(status="not available", detail=str(e))
        except Exception as e:  # a runtime that crashes is a failed runtime, not a crashed command
            row.update(status="error", detail="%s: %s" % (type(e).__name__, e))
        else:
            if out.shape != golden.shape:
                row.update(status="error", detail="output shape %s, expected %s" % (out.shape, golden.shape))
            else:
                bad = out.astype(np.int16) != golden.astype(np.int16)
                row.update(status="ok" if not bad.any() else "mismatch", compared=n_inputs,
                           mismatching_bytes=int(bad.sum()), mismatching_inputs=int(bad.any(axis=1).sum()),
                           max_abs_diff=int(np.abs(out.astype(np.int16) - golden).max()) if bad.any() else 0)
        result["runtimes"].append(row)
    return result


def _print(result: dict[str, Any]) -> None:
    print("%s: %d B blob, %d random int8 inputs (seed %d), golden = %s"
          % (result["model"], result["blob_size"], result["inputs"], result["seed"], result["golden"]))
    for r in result["runtimes"]:
        if r["status"] in ("ok", "mismatch"):
            print("  %-12s %5d inputs compared, %6d mismatching output bytes of %d%s"
                  % (r["name"], r["compared"], r["mismatching_bytes"], result["output_bytes"],
                     "" if r["status"] == "ok" else
                     " (%d inputs differ, max |diff| %d)" % (r["mismatching_inputs"], r["max_abs_diff"])))
        else:
            print("  %-12s %s: %s" % (r["name"], r["status"], r["detail"]))


def parity(
    model: str = typer.Argument(..., help="an int8 .tflite or a model blob"),
    inputs: int = typer.Option(200, "--inputs", min=1, help="number of random int8 inputs"),
    seed: int = typer.Option(0, "--seed", help="random seed for the inputs"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Compare every runtime's output bytes with TFLM's (or the reference runtime's, for a blob)."""
    blob, tflite, error = _load(model)
    if error:
        if as_json:
            print(json.dumps({"model": model, "error": error}))
        else:
            print(error, file=sys.stderr)
        raise typer.Exit(2)
    from training.tflm import TFLMError
    try:
        result = compare(blob, tflite, inputs, seed)
    except TFLMError as e:
        if as_json:
            print(json.dumps({"model": model, "error": "TFLM: %s" % e}))
        else:
            print("TFLM cannot be the reference for %s: %s" % (model, e), file=sys.stderr)
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(result))
    else:
        _print(result)
    failed = any(r["status"] in ("mismatch", "error") for r in result["runtimes"])
    raise typer.Exit(1 if failed else 0)
