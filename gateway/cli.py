"""Commands for the gateway tier: gateway run, bench ingest."""
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def run(
    broker: str = typer.Option(..., help="mqtt://[user:password@]host:port of the site broker"),
    cloud: str = typer.Option(..., help="Base URL of the cloud API, e.g. http://cloud:8000"),
    site: str = typer.Option(..., help="Site name (the second topic level)"),
    token: str = typer.Option("", envvar=["TINYFLEET_GATEWAY_TOKEN", "TINYFLEET_TOKEN"],
                              help="Bearer token with the gateway role"),
    broker_user: str = typer.Option("", help="MQTT user (default: the gateway id when a password is set)"),
    broker_password: str = typer.Option("", envvar="TINYFLEET_BROKER_PASSWORD", help="MQTT password"),
    gateway_id: str = typer.Option("", help="MQTT client id and name towards the cloud (default gw-<site>)"),
    share_group: str = typer.Option("", help="Split the site with other gateways of this $share group "
                                    "(every gateway of the site gives the same name)"),
    serial: list[str] = typer.Option([], help="Serial port of a BLE-only node (repeatable)"),
    state_dir: Path = typer.Option(Path("var/gateway"), help="Outbox, OTA blob cache, resume state"),
    metrics_port: int = typer.Option(0, help="Port for /metrics and /healthz (0: off)"),
    metrics_host: str = typer.Option("0.0.0.0", help="Address the metrics port binds"),
    queue_max_mb: float = typer.Option(256.0, help="Outbox size before the oldest records are dropped"),
    ota_chunk_rate: float = typer.Option(200.0, help="OTA chunks per second, all nodes together"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run a site gateway between the local broker and the cloud."""
    import logging

    from gateway.config import GatewayConfig
    from gateway.service import Gateway

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = GatewayConfig(broker=broker, cloud=cloud, site=site, token=token, gateway_id=gateway_id,
                            share_group=share_group,
                            broker_user=broker_user, broker_password=broker_password, metrics_host=metrics_host,
                            serial=list(serial), state_dir=state_dir, metrics_port=metrics_port,
                            queue_max_bytes=int(queue_max_mb * 1024 * 1024), ota_chunk_rate=ota_chunk_rate)
    except ValueError as e:
        typer.echo(f"tinyfleet gateway run: {e}", err=True)
        raise typer.Exit(2) from None
    Gateway(cfg).run()


def bench_ingest(
    rate: int = typer.Option(1000, help="Offered msg/s of the paced latency run"),
    seconds: float = typer.Option(10.0, help="Length of the paced latency run"),
    messages: int = typer.Option(60000, help="Messages in the raw and in the max-rate run"),
    publishers: int = typer.Option(10, help="Simulated nodes"),
    gateways: int = typer.Option(1, help="Gateway processes sharing the site ($share subscription)"),
    store: str = typer.Option("real", help="real: `tinyfleet cloud serve` (SQLite); stand-in: the tests' contract server"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    """Telemetry rate and latency through broker and gateway, against the raw broker rate."""
    import json

    from gateway.bench import run_bench

    result = run_bench(rate=rate, seconds=seconds, publishers=publishers, max_messages=messages,
                       gateways=gateways, store=store)
    typer.echo(json.dumps(result, indent=None if as_json else 2))
