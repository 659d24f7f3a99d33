"""The `tinyfleet` command. Each tier owns its commands in `<tier>/cli.py`;
this file only mounts them. Tier CLI modules import nothing heavy at module
level, so `tinyfleet --help` answers in well under a second."""
import typer

from cloud import cli as cloud_cli
from gateway import cli as gateway_cli
from node_firmware import cli as node_cli
from tinyfleet import demo as demo_cli
from tinyfleet import parity as parity_cli
from training import cli as training_cli

app = typer.Typer(
    help="TinyFleet: int8 TinyML models on microcontroller fleets, an MQTT gateway, "
    "and a cloud that retrains and ships models over the air.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("demo")(demo_cli.demo)
app.command("train")(training_cli.train)
app.command("export")(training_cli.export)
app.command("parity")(parity_cli.parity)
app.add_typer(cloud_cli.app, name="cloud", help="Run the cloud service.")
app.add_typer(gateway_cli.app, name="gateway", help="Run a site gateway.")
app.add_typer(node_cli.app, name="node", help="Run simulated nodes.")
app.add_typer(cloud_cli.ota_app, name="ota", help="Issue and watch OTA model deployments.")
app.add_typer(node_cli.flash_app, name="flash", help="Flash real boards (ESP32, Nano 33 BLE Sense).")

bench_app = typer.Typer(help="Benchmarks; each prints JSON and writes bench/results/.", no_args_is_help=True)
bench_app.command("train")(training_cli.bench_train)
bench_app.command("runtime")(node_cli.bench_runtime)
bench_app.command("ingest")(gateway_cli.bench_ingest)
bench_app.command("ota")(demo_cli.bench_ota)
bench_app.command("loop")(demo_cli.bench_loop)
bench_app.command("scale")(demo_cli.bench_scale)
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
