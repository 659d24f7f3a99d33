"""`tinyfleet bench ota`: how long N simulated nodes take to reach UPDATED through the
real cloud and gateway processes and a private mosquitto, with a share of OTA chunks
lost on the nodes' radio link; bytes the broker delivered per node against the blob
size; blob downloads from the cloud per gateway. Nodes run the real ESP32 app and
OTA client (node_firmware/sim), stepped by threads of this process."""
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

SITE = "bench"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def two_versions(model: str, src: Path, dest: Path) -> int:
    """dest/<model>/1 (the committed artifacts) and dest/<model>/2 (the same weights
    re-issued as version 2) for the cloud, and dest/nodes/<model>/1 to flash the nodes
    with. Returns the size of the v2 blob."""
    from training.export import find_version, make_blob
    folder = find_version(model, src, None)
    report = json.loads((folder / "report.json").read_text())
    tflite = (folder / "int8.tflite").read_bytes()
    for v in (1, 2):
        out = dest / model / str(v)
        out.mkdir(parents=True, exist_ok=True)
        (out / "int8.tflite").write_bytes(tflite)
        (out / "report.json").write_text(json.dumps({**report, "version": v}))
        blob = make_blob(tflite, model, v, report)
        (out / "model.tfmb").write_bytes(blob)
        if v == 1:
            shutil.copytree(out, dest / "nodes" / model / "1")
    return len(blob)


def sim_root(name: str) -> Path:
    """Simulated flash for a big fleet: on tmpfs when there is one (thousands of small
    files renamed on every OTA step; on this machine's disk a rename costs ~1 ms)."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix=f"tinyfleet-{name}-", dir=base))


def run_one(nodes: int, model: str, loss: float, work: Path, timeout: float = 300.0, echo=print) -> dict:
    from node_firmware.sim import fleet
    from node_firmware.sim.faults import NONE, Faults
    from node_firmware.sim.umqtt import simple
    from tinyfleet.stack import Stack

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    blob_bytes = two_versions(model, Path("models"), work / "models")
    stack = Stack(work, SITE, models=work / "models", cloud_env={"TINYFLEET_OTA_TIMEOUT_S": str(timeout)},
                  gateway_args=("--ota-chunk-rate", "5000"))
    root = sim_root("bench-ota")
    stepper = None
    try:
        stack.start()
        sim = fleet.make_nodes(nodes, SITE, stack.broker.url, [model], work / "models" / "nodes", stack.key, root,
                               sample_ms=3_600_000, prefix="b-")
        stepper = fleet.Stepper(sim).start()
        deadline = time.monotonic() + 120 + 0.1 * nodes
        while stack.known_nodes(model=model) < nodes:   # until the cloud knows every node
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {stack.known_nodes(model=model)} of {nodes} nodes registered with the cloud")
            time.sleep(0.5)
        simple.FAULTS = Faults(chunkloss=loss)
        simple.RX_BYTES.clear()
        t0 = time.monotonic()
        dep = stack.http.post("/api/v1/deployments", json={
            "model": model, "version": 2, "target": {"site": SITE}, "canary": max(1, nodes // 100),
            "wave": {"mode": "exponential", "size": max(2, nodes // 10), "interval_s": 0.5},
            "abort": {"failure_pct": 50, "min_nodes": max(2, nodes // 10)}}).json()
        state = dep
        while time.monotonic() - t0 < timeout and state["state"] not in ("succeeded", "aborted", "canceled"):
            time.sleep(0.5)
            state = stack.http.get(f"/api/v1/deployments/{dep['id']}").json()
        seconds = time.monotonic() - t0
        chunk_bytes = [simple.RX_BYTES.get((n.node.node_id, "ota/chunk"), 0) for n in sim]
        downloads = stack.gateway_metric("tinyfleet_gateway_blob_downloads_total")
        result = {
            "nodes": nodes, "model": model, "chunk_loss": loss, "blob_bytes": blob_bytes,
            "state": state["state"], "updated": state["counts"].get("UPDATED", 0),
            "seconds_to_all_updated": round(seconds, 1),
            "bytes_per_node_over_blob": round(sum(chunk_bytes) / len(chunk_bytes) / blob_bytes, 3),
            "blob_downloads_per_gateway": downloads,
            "cloud_egress_bytes_per_gateway": downloads * blob_bytes,
            "chunks_sent": stack.gateway_metric("tinyfleet_gateway_ota_chunks_sent_total"),
            "sim_slowest_pass_s": round(max(stepper.slowest), 2),   # every node steps once per pass
        }
        echo(json.dumps(result))
        return result
    finally:
        simple.FAULTS = NONE
        if stepper is not None:
            stepper.stop()
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(node_counts=(100, 1000), models=("sine", "anomaly"), losses=(0.0, 0.1), echo=print) -> dict:
    _raise_fd_limit()
    rows = []
    for model in models:
        for n in node_counts:
            for loss in losses:
                rows.append(run_one(n, model, loss, Path("var/bench/ota"), echo=echo))
    big = [r for r in rows if r["nodes"] >= 1000 and r["chunk_loss"] >= 0.1]
    goals = {
        "1000_nodes_10pct_loss_seconds_max_60": {"value": max((r["seconds_to_all_updated"] for r in big), default=None),
                                                 "met": bool(big) and all(r["state"] == "succeeded" and r["seconds_to_all_updated"] <= 60 for r in big)},
        "bytes_per_node_over_blob_max_1.25": {"value": max(r["bytes_per_node_over_blob"] for r in rows),
                                              "met": all(r["bytes_per_node_over_blob"] <= 1.25 for r in rows)},
        "blob_downloads_per_gateway_1": {"value": max(r["blob_downloads_per_gateway"] for r in rows),
                                         "met": all(r["blob_downloads_per_gateway"] == 1 for r in rows)},
    }
    result = {"bench": "ota", "runs": rows, "goals": goals}
    out = Path("bench/results/ota.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result
