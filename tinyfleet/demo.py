"""`tinyfleet demo`: the whole loop on one machine. It starts a private broker
(mosquitto, or the embedded fallback when mosquitto is missing), the cloud
(SQLite), one gateway per site and a simulated fleet running the real node
firmware, then watches the story through the cloud's public API:

  telemetry flows -> a machine regime change raises site-a's anomaly rate -> the
  cloud's drift rule retrains the anomaly model and checks it -> the demo (as the
  operator) deploys it canary-first over the air -> nodes report UPDATED -> the
  false-alarm rate falls.

Every process is a real `tinyfleet ...` command, the same ones docker-compose runs."""
import secrets
import shutil
import signal
import time
from pathlib import Path

import typer

SITES = ("site-a", "site-b")
MODELS = "anomaly,sine,weather"
DRIFT_SITE = "site-a"


class Story:
    """The checkpoints, in order; each remembers when it was reached."""

    STEPS = (
        ("fleet", "every node online and sending telemetry"),
        ("drift", "field change on site-a (new machinery next door): anomaly rate over the drift threshold"),
        ("retrain", "cloud retrained the anomaly model and it passed its checks"),
        ("deploy", "operator deployed it canary-first over the air"),
        ("updated", "every site-a anomaly node reported UPDATED"),
        ("calm", "false-alarm rate on the new model back under the threshold"),
    )

    def __init__(self):
        self.reached: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.t0 = time.monotonic()

    def mark(self, step: str, note: str = "") -> bool:
        if step in self.reached:
            return False
        self.reached[step] = time.monotonic() - self.t0
        self.notes[step] = note
        return True

    @property
    def complete(self) -> bool:
        return len(self.reached) == len(self.STEPS)

    @property
    def next_step(self) -> str | None:
        return next((s for s, _ in self.STEPS if s not in self.reached), None)


class Fleet:
    """Starts and stops the processes of the demo."""

    def __init__(self, work: Path, port: int, nodes: int, drift_at: float):
        from tinyfleet.broker import free_port, make_broker
        from tinyfleet.procs import Service, tinyfleet_argv

        self.work = work
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {r: secrets.token_urlsafe(12) for r in ("viewer", "operator", "gateway")}
        self.key = secrets.token_hex(32)
        self.drift_threshold = 0.3
        self.broker = make_broker(work / "broker")
        cloud_env = {
            "TINYFLEET_TOKENS": ",".join(f"{r}:{t}" for r, t in self.tokens.items()),
            "TINYFLEET_FLEET_KEY": self.key,
            "TINYFLEET_ANOMALY_WINDOW_S": "20",
            "TINYFLEET_DRIFT_WINDOW_S": "40",
            "TINYFLEET_DRIFT_MIN_SAMPLES": "200",
            "TINYFLEET_DRIFT_THRESHOLD": str(self.drift_threshold),
            "TINYFLEET_DRIFT_COOLDOWN_S": "3600",
            "TINYFLEET_OTA_TIMEOUT_S": "90",
        }
        self.services = [Service("cloud", tinyfleet_argv(
            "cloud", "serve", "--port", str(self.port), "--data", str(work / "cloud"), "--models", "models"),
            work / "logs", env=cloud_env, health_url=self.url + "/readyz")]
        per_site = [nodes // len(SITES) + (1 if i < nodes % len(SITES) else 0) for i in range(len(SITES))]
        for site, count in zip(SITES, per_site):
            self.services.append(Service(f"gateway-{site}", tinyfleet_argv(
                "gateway", "run", "--broker", self.broker.url, "--cloud", self.url, "--site", site,
                "--state-dir", str(work / "gateway" / site)), work / "logs",
                env={"TINYFLEET_GATEWAY_TOKEN": self.tokens["gateway"]}))
            sim = ["node", "sim", "--count", str(count), "--site", site, "--broker", self.broker.url,
                   "--models", MODELS, "--root", str(work / "sim"), "--sample-ms", "500", "--prefix", f"{site}-n"]
            if site == DRIFT_SITE:
                sim += ["--drift-at", str(drift_at)]
            self.services.append(Service(f"nodes-{site}", tinyfleet_argv(*sim), work / "logs",
                                         env={"TINYFLEET_FLEET_KEY": self.key}))
        self.total_nodes = nodes

    def start(self, echo) -> None:
        self.broker.start()
        echo(f"broker    {self.broker.url} ({self.broker.describe()})")
        cloud = self.services[0]
        cloud.start()
        cloud.wait_healthy(120)
        echo(f"cloud     {self.url}  dashboard: {self.url}/?token={self.tokens['operator']}")
        for s in self.services[1:]:
            s.start()
        time.sleep(1.0)
        for s in self.services[1:]:
            s.wait_healthy(10)
        echo(f"gateways  {', '.join(SITES)};  fleet: {self.total_nodes} simulated ESP32 nodes ({MODELS})")
        echo(f"logs      {self.work / 'logs'}")

    def service(self, name: str):
        return next(s for s in self.services if s.name == name)

    def check_alive(self) -> None:
        for s in self.services:
            if not s.alive():
                raise RuntimeError(f"{s.name} stopped unexpectedly; last log lines:\n{s.tail()}")

    def stop(self) -> None:
        for s in reversed(self.services):
            s.stop()
        self.broker.stop()


class Operator:
    """The demo's view of the cloud: only the public, documented API."""

    def __init__(self, url: str, token: str):
        import httpx
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def get(self, path: str, **params):
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict | None = None):
        r = self.http.post(path, json=body or {})
        r.raise_for_status()
        return r.json()


def advance(story: Story, op: Operator, fleet: Fleet, state: dict) -> None:
    """Moves the story one poll forward."""
    nodes = op.get("/api/v1/nodes")
    state["nodes"] = nodes
    sites = {s["id"]: s for s in op.get("/api/v1/sites")}
    state["sites"] = sites
    step = story.next_step
    if step == "fleet":
        online = [n for n in nodes if n["online"] and n.get("last_result")]
        if len(online) >= fleet.total_nodes:
            story.mark("fleet", f"{len(online)} nodes")
    elif step == "drift":
        rate = (sites.get(DRIFT_SITE) or {}).get("anomaly_rate") or 0.0
        if rate >= fleet.drift_threshold:
            story.mark("drift", f"anomaly rate {rate:.2f}")
    elif step == "retrain":
        jobs = [j for j in op.get("/api/v1/jobs") if j["model"] == "anomaly"]
        state["job"] = jobs[0] if jobs else None
        done = [j for j in jobs if j["status"] in ("succeeded", "rejected", "failed")]
        if done:
            job = done[0]
            if job["status"] != "succeeded":
                raise RuntimeError(f"retraining job {job['id']} {job['status']}: {job.get('error')}; "
                                   f"log: {job['log'][-3:]}")
            story.mark("retrain", f"job {job['id']} -> version {job['result_version']}")
            state["version"] = job["result_version"]
    elif step == "deploy":
        dep = op.post("/api/v1/deployments", {
            "model": "anomaly", "version": state["version"], "target": {"site": DRIFT_SITE},
            "canary": 1, "wave": {"mode": "exponential", "size": 2, "interval_s": 2},
            "abort": {"failure_pct": 50, "min_nodes": 2}})
        state["deployment"] = dep["id"]
        story.mark("deploy", f"deployment {dep['id']}, canary first")
    elif step == "updated":
        dep = op.get(f"/api/v1/deployments/{state['deployment']}")
        state["dep"] = dep
        if dep["state"] == "succeeded":
            story.mark("updated", f"{dep['counts'].get('UPDATED', 0)} nodes on v{state['version']}")
            state["updated_at_ms"] = int(time.time() * 1000)
        elif dep["state"] in ("aborted", "canceled"):
            raise RuntimeError(f"deployment {dep['id']} {dep['state']}: {dep.get('reason')}")
    elif step == "calm":
        recs = op.get("/api/v1/telemetry", model="anomaly", since=state["updated_at_ms"], limit=2000)
        recs = [r for r in recs if r["model_version"] == state["version"]
                and r["node"].startswith(f"{DRIFT_SITE}-")]
        state["calm_samples"] = len(recs)
        if len(recs) >= 40:
            rate = sum(1 for r in recs if r["result"] == 1) / len(recs)
            state["calm_rate"] = rate
            if rate < fleet.drift_threshold / 2:
                op.post(f"/api/v1/models/anomaly/{state['version']}/promote")
                story.mark("calm", f"false-alarm rate {rate:.2f} over {len(recs)} windows; v{state['version']} promoted")


def summary_line(story: Story, state: dict) -> str:
    nodes = state.get("nodes", [])
    online = sum(1 for n in nodes if n["online"])
    rates = ", ".join(f"{s}: {(v.get('anomaly_rate') or 0):.2f}" for s, v in sorted(state.get("sites", {}).items()))
    step = f"waiting for: {story.next_step}" if story.next_step else "story complete (Ctrl-C stops)"
    return f"[{time.monotonic() - story.t0:5.0f}s] nodes {online}/{len(nodes)} online | anomaly rate {rates} | {step}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_story(headless: bool, duration: float, nodes: int, port: int, drift_at: float, workdir: Path,
              echo=typer.echo) -> tuple[bool, Story, dict]:
    """Starts everything, plays the story until it completes (headless) or `duration`
    runs out, stops everything. Returns (completed, story, state). SIGTERM stops it like
    Ctrl-C, and so does SIGINT when a shell started it in the background (which ignores
    SIGINT): the services run in process groups of their own and would outlive the demo."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    fleet = Fleet(workdir.resolve(), port, nodes, drift_at)
    story, state = Story(), {}
    ok = False
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        fleet.start(echo)
        op = Operator(fleet.url, fleet.tokens["operator"])
        story.t0 = time.monotonic()
        last_print = 0.0
        while duration <= 0 or time.monotonic() - story.t0 < duration:
            fleet.check_alive()
            if "onset" not in state and "field change" in fleet.service(f"nodes-{DRIFT_SITE}").tail(5):
                state["onset"] = time.monotonic() - story.t0
            before = set(story.reached)
            advance(story, op, fleet, state)
            for step, text in Story.STEPS:
                if step in story.reached and step not in before:
                    echo(f"[{story.reached[step]:5.0f}s] ✓ {text} ({story.notes[step]})")
            if time.monotonic() - last_print > 10:
                echo(summary_line(story, state))
                last_print = time.monotonic()
            if story.complete and headless:
                break
            time.sleep(1.0)
        ok = story.complete
        if not ok:
            echo(f"story incomplete after {duration:.0f} s: still waiting for '{story.next_step}'")
    except KeyboardInterrupt:
        echo("stopping ...")
        ok = not headless
    except Exception as e:  # a stopped service or a failed step: say which, then stop everything
        echo(f"demo failed: {e}")
    finally:
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)      # a second Ctrl-C must not cut the clean-up short
        fleet.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return ok, story, state


def demo(
    headless: bool = typer.Option(False, help="No live screen; exit 0 only if the whole story completes."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C, or 300 with --headless)."),
    nodes: int = typer.Option(20, min=4, help="Simulated nodes, split across two sites."),
    port: int = typer.Option(8000, help="Cloud port (0: a free one)."),
    drift_at: float = typer.Option(25.0, help="Seconds after start when site-a's machines get new surroundings."),
    workdir: Path = typer.Option(Path("var/demo"), help="Broker, database, gateway queues, node flash, logs (wiped first)."),
) -> None:
    """Start broker, cloud, gateways and a simulated fleet, and play the retrain-and-OTA story."""
    if headless and duration <= 0:
        duration = 300.0
    ok, _, _ = run_story(headless, duration, nodes, port, drift_at, workdir)
    if headless:
        raise typer.Exit(0 if ok else 1)


def bench_loop(
    nodes: int = typer.Option(20, min=4, help="Simulated nodes, split across two sites."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Time from drift onset to the whole affected fleet on the retrained model (the demo's story)."""
    import json

    log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
    ok, story, state = run_story(True, 400.0, nodes, 0, 25.0, Path("var/bench/loop"), echo=log)
    r = {k: round(v, 1) for k, v in story.reached.items()}
    onset = state.get("onset")
    loop = round(r["updated"] - onset, 1) if ok and onset is not None else None
    result = {"bench": "loop", "nodes": nodes, "completed": ok, "onset_s": onset and round(onset, 1),
              "steps_s": r, "drift_onset_to_fleet_updated_s": loop,
              "goal_le_120_s": {"value": loop, "met": loop is not None and loop <= 120}}
    out = Path("bench/results/loop.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
    if not ok:
        raise typer.Exit(1)


def bench_ota(
    nodes: str = typer.Option("100,1000", help="Comma-separated fleet sizes."),
    models: str = typer.Option("sine,anomaly", help="Comma-separated models whose blob is shipped."),
    loss: str = typer.Option("0,0.1", help="Comma-separated shares of OTA chunks lost on the radio link."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Time for N simulated nodes to reach UPDATED through cloud, gateway and mosquitto."""
    import json

    from tinyfleet import bench_ota as bench

    log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
    result = bench.run([int(n) for n in nodes.split(",")], models.split(","), [float(x) for x in loss.split(",")], echo=log)
    typer.echo(json.dumps(result, indent=2) if as_json else json.dumps(result["goals"], indent=2))


def bench_scale(
    levels: str = typer.Option("500,1000,1500,2000,2500,3000", help="Comma-separated fleet sizes, tried in order."),
    seconds: float = typer.Option(20.0, min=1.0, help="Measuring window per level."),
    models: str = typer.Option("sine", help="Comma-separated models of the simulated nodes."),
    threads: int = typer.Option(8, min=1, help="Simulator threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """How many simulated nodes one machine holds at 1 msg/s each with p99 <= 1 s."""
    import json

    from tinyfleet import bench_scale as bench

    log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
    result = bench.run([int(n) for n in levels.split(",")], seconds, models.split(","), threads, echo=log)
    typer.echo(json.dumps(result, indent=None if as_json else 2))
