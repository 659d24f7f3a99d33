"""`tinyfleet bench runtime`: for each committed model, the blob's size against the
.tflite, the MicroPython int8 runtime against a float list-of-lists net in the same
WebAssembly run, and the C runtime and generated C on the emulated Cortex-M4
(sizes from arm-none-eabi-size, instructions counted by a QEMU plugin)."""
import json
import time
from pathlib import Path

MODELS = ("sine", "anomaly", "weather", "keyword", "iris")

# The goals, checked against what was measured in this run.
GOALS = {
    "sine_blob_bytes_max": 600,
    "c_runtime_text_max": 4096,
    "codegen_sine_text_max": 1024,
    "codegen_sine_insns_per_mac_max": 6.0,
    "codegen_keyword_insns_per_mac_max": 3.0,
    "micropython_int8_vs_float_min": 1.5,
}


def model_row(name: str, models: Path) -> dict:
    from node_firmware import c_host, micropython_host
    from training.export import find_version

    folder = find_version(name, models, None)
    blob = (folder / "model.tfmb").read_bytes()
    row = {"version": int(folder.name), "tflite_bytes": (folder / "int8.tflite").stat().st_size,
           "blob_bytes": len(blob)}
    sizes = json.loads((folder / "report.json").read_text())["sizes_bytes"]  # int8.tflite is one of the two
    for kind in ("per_channel", "per_tensor"):
        row[f"tflite_{kind}_bytes"] = sizes[f"int8_tflite_{kind}"]
    t = time.monotonic()
    row["micropython"] = micropython_host.bench_micropython(name, models, int(folder.name))
    row["c"] = c_host.bench_c(blob)
    row["seconds"] = round(time.monotonic() - t, 1)
    return row


def check_goals(rows: dict) -> dict:
    out = {}
    if "sine" in rows:
        s = rows["sine"]
        out["sine_blob_bytes"] = (s["blob_bytes"], s["blob_bytes"] <= GOALS["sine_blob_bytes_max"])
        cs = s["c"]["codegen_speed"]
        out["codegen_sine_text"] = (cs["text"], cs["text"] <= GOALS["codegen_sine_text_max"])
        out["codegen_sine_insns_per_mac"] = (cs["insns_per_mac"],
                                             cs["insns_per_mac"] <= GOALS["codegen_sine_insns_per_mac_max"])
    if "keyword" in rows:
        k = rows["keyword"]["c"]["codegen_speed"]["insns_per_mac"]
        out["codegen_keyword_insns_per_mac"] = (k, k <= GOALS["codegen_keyword_insns_per_mac_max"])
    texts = [r["c"]["runtime"]["text"] for r in rows.values()]
    if texts:
        out["c_runtime_text"] = (max(texts), max(texts) <= GOALS["c_runtime_text_max"])
    ratios = {n: r["micropython"].get("ratio") for n, r in rows.items() if r["micropython"].get("ratio")}
    if ratios:
        worst = min(ratios.values())
        out["micropython_int8_vs_float_worst"] = (worst, worst >= GOALS["micropython_int8_vs_float_min"])
    return {k: {"value": v, "met": ok} for k, (v, ok) in out.items()}


def run(models: Path = Path("models"), names=MODELS, echo=print) -> dict:
    rows, skipped = {}, {}
    for name in names:
        try:
            rows[name] = model_row(name, models)
            echo(f"{name}: done in {rows[name]['seconds']} s")
        except FileNotFoundError as e:
            skipped[name] = f"no committed model: {e}"
            echo(f"{name}: skipped ({skipped[name]})")
    result = {"bench": "runtime", "models": rows, "skipped": skipped, "goals": check_goals(rows)}
    out = Path("bench/results/runtime.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result
