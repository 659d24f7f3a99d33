"""Commands for the cloud tier: `cloud serve` and `ota deploy|status|pause|resume|cancel|abort`
(the ota commands are thin clients of the HTTP API). Heavy imports stay inside functions."""
from __future__ import annotations

import json
import os
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)
ota_app = typer.Typer(no_args_is_help=True)

CLOUD = typer.Option(os.environ.get("TINYFLEET_CLOUD", "http://127.0.0.1:8000"), "--cloud", help="cloud base URL")
TOKEN = typer.Option(os.environ.get("TINYFLEET_TOKEN", ""), "--token", help="operator (or viewer) token")


def _tokens(settings) -> dict:
    """Tokens from settings, else from <data>/tokens.env, else new dev tokens kept there."""
    from cloud.settings import dev_tokens, format_tokens, parse_tokens
    if settings.tokens:
        return settings.tokens
    path = Path(settings.data_dir) / "tokens.env"
    if path.exists():
        return parse_tokens(path.read_text().strip().partition("=")[2])
    tokens = dev_tokens()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("TINYFLEET_TOKENS=" + format_tokens(tokens) + "\n")
    path.chmod(0o600)
    return tokens


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="bind address"),
          port: int = typer.Option(8000, help="TCP port"),
          db: str = typer.Option("", "--db", help="database URL (default: SQLite in --data; or TINYFLEET_DB_URL)"),
          models: Path = typer.Option(None, "--models", help="committed model folders (default models/)"),
          data: Path = typer.Option(None, "--data", help="database, retrained models (default var/cloud)"),
          worker: bool = typer.Option(True, help="spawn the retraining worker process")) -> None:
    """Start the cloud service (API + dashboard) and its retraining worker."""
    import subprocess
    import sys

    import uvicorn

    from cloud.app import create_app
    from cloud.settings import Settings, format_tokens
    over = {k: v for k, v in {"db_url": db, "models_dir": models, "data_dir": data}.items() if v}
    try:
        settings = Settings.from_env(**over)
    except ValueError as e:
        typer.echo(f"tinyfleet cloud: bad setting: {e}", err=True)
        raise typer.Exit(2)
    settings.tokens = _tokens(settings)
    if "TINYFLEET_TOKENS" not in os.environ:
        typer.echo("tokens (also in %s):" % (Path(settings.data_dir) / "tokens.env"))
        for token, role in settings.tokens.items():
            typer.echo(f"  {role:9s} {token}")
    app_ = create_app(settings)
    proc = None
    if worker:
        env = {**os.environ, **settings.to_env(), "TINYFLEET_TOKENS": format_tokens(settings.tokens)}
        proc = subprocess.Popen([sys.executable, "-m", "cloud.worker"], env=env)
    typer.echo(f"tinyfleet cloud on http://{host}:{port} (db {settings.database_url.split('@')[-1]})")
    try:
        uvicorn.run(app_, host=host, port=port, timeout_graceful_shutdown=2, log_level="info")
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _call(method: str, cloud: str, token: str, path: str, body: dict | None = None) -> dict:
    import httpx
    if not token:
        typer.echo("tinyfleet ota: --token (or TINYFLEET_TOKEN) is required", err=True)
        raise typer.Exit(2)
    try:
        r = httpx.request(method, cloud.rstrip("/") + path, json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as e:
        typer.echo(f"tinyfleet ota: cannot reach {cloud}: {e}", err=True)
        raise typer.Exit(1)
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text
        typer.echo(f"tinyfleet ota: {r.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return r.json()


def _show(d) -> None:
    typer.echo(json.dumps(d, indent=2))


@ota_app.command()
def deploy(model: str = typer.Argument(..., help="model name"), version: int = typer.Argument(...),
           site: str = typer.Option(None, help="target site"),
           tag: list[str] = typer.Option(None, "--tag", help="target nodes with this tag (repeatable)"),
           node: list[str] = typer.Option(None, "--node", help="target this node (repeatable)"),
           canary: int = typer.Option(1, help="nodes in the canary wave"),
           wave_size: int = typer.Option(5, help="nodes per wave (first wave when exponential)"),
           wave_mode: str = typer.Option("constant", help="constant or exponential"),
           interval: float = typer.Option(10.0, help="seconds between waves"),
           failure_pct: float = typer.Option(20.0, help="abort above this failure percentage"),
           min_nodes: int = typer.Option(3, help="... once this many nodes finished"),
           cloud: str = CLOUD, token: str = TOKEN) -> None:
    """Start a staged OTA deployment."""
    target = {k: v for k, v in {"site": site, "tags": tag or None, "nodes": node or None}.items() if v}
    body = {"model": model, "version": version, "target": target, "canary": canary,
            "wave": {"mode": wave_mode, "size": wave_size, "interval_s": interval},
            "abort": {"failure_pct": failure_pct, "min_nodes": min_nodes}}
    d = _call("POST", cloud, token, "/api/v1/deployments", body)
    typer.echo(f"deployment {d['id']}: {len(d['nodes'])} nodes in {len(d['waves'])} waves, {d['state']}")


@ota_app.command()
def status(deployment: str = typer.Argument(None, help="deployment id (omit to list)"),
           cloud: str = CLOUD, token: str = TOKEN) -> None:
    """Show one deployment (waves, per-node states) or list them."""
    if deployment:
        _show(_call("GET", cloud, token, f"/api/v1/deployments/{deployment}"))
        return
    for d in _call("GET", cloud, token, "/api/v1/deployments"):
        counts = " ".join(f"{k}={v}" for k, v in sorted(d["counts"].items()))
        typer.echo(f"{d['id']:16s} {d['model']} v{d['version']:<4d} {d['state']:10s} {counts}")


def _action(name: str):
    def command(deployment: str = typer.Argument(...), cloud: str = CLOUD, token: str = TOKEN) -> None:
        d = _call("POST", cloud, token, f"/api/v1/deployments/{deployment}/{name}")
        typer.echo(f"deployment {d['id']}: {d['state']}" + (f" ({d['reason']})" if d.get("reason") else ""))
    command.__doc__ = {"pause": "Pause a deployment (no new waves).", "resume": "Resume a paused deployment.",
                       "cancel": "Cancel a deployment (no rollback).",
                       "abort": "Abort a deployment and roll back its updated nodes."}[name]
    return command


for _name in ("pause", "resume", "cancel", "abort"):
    ota_app.command(_name)(_action(_name))
