"""Commands for the node tier: node sim, flash esp32|nano33, bench runtime."""
from pathlib import Path
from typing import Optional

import typer


app = typer.Typer(no_args_is_help=True)
flash_app = typer.Typer(no_args_is_help=True)


@app.command()
def sim(
    count: int = typer.Option(1, "--count", min=1, help="Number of simulated ESP32 nodes."),
    site: str = typer.Option("site-1", "--site", help="Site id in the topics."),
    broker: str = typer.Option("mqtt://127.0.0.1:1883", "--broker", help="mqtt://host:port"),
    models: str = typer.Option("sine", "--models", help="Comma-separated model names, given out round-robin."),
    model_dir: Path = typer.Option(Path("models"), "--model-dir", help="Holds <name>/<version>/model.tfmb."),
    key: str = typer.Option("", "--key", envvar="TINYFLEET_FLEET_KEY", help="Fleet HMAC key (hex) for OTA."),
    root: Optional[Path] = typer.Option(None, "--root", help="Nodes' flash directories (default var/sim)."),
    duration: float = typer.Option(0.0, "--duration", help="Seconds to run; 0 runs until Ctrl-C."),
    sample_ms: int = typer.Option(1000, "--sample-ms", min=1, help="Sampling period of every node."),
    runtime: str = typer.Option("tfmicro", "--runtime", help="tfmicro (the device code) or reference (numpy)."),
    prefix: str = typer.Option("esp32-", "--prefix", help="Node ids are <prefix><n>; keep them unique per fleet."),
    drift_at: Optional[float] = typer.Option(None, "--drift-at", help="Seconds after start when the vibration machines change regime."),
    faults: str = typer.Option("", "--faults", help="Field faults, e.g. drop=0.1,delay=0.5,chunkloss=0.1,corrupt=0.05,"
                               "disconnect=0.01,powercut=0.05,seed=1 (probabilities, seconds, rates per node-second)."),
    threads: int = typer.Option(8, "--threads", min=1, help="Threads stepping the nodes."),
) -> None:
    """Run simulated ESP32 nodes executing the real firmware code against a broker.

    Broker kills and cloud pauses are not node faults: the reliability tests
    (tests/e2e/test_reliability.py) do those to the processes themselves."""
    from node_firmware.sim import fleet
    from node_firmware.sim.faults import FaultError, Faults
    try:
        spec = Faults.parse(faults)
    except FaultError as e:
        typer.echo("tinyfleet node sim: --faults: %s" % e, err=True)
        raise typer.Exit(2)
    try:
        nodes = fleet.make_nodes(count, site, broker, [m for m in models.split(",") if m], model_dir, key,
                                 root or fleet.default_root(), sample_ms, runtime, prefix=prefix)
    except Exception as e:  # SimError, ConfigError, a bad blob: say what, exit 1
        typer.echo("tinyfleet node sim: %s" % e, err=True)
        raise typer.Exit(1)
    fleet.run(nodes, duration, echo=typer.echo, drift_at=drift_at, threads=threads, faults=spec)


@flash_app.command()
def esp32(
    port: str = typer.Option(..., "--port", help="Serial port of the board, e.g. /dev/ttyUSB0."),
    firmware: Path = typer.Option(..., "--firmware", help="MicroPython image (.bin) for the chip."),
    config: Path = typer.Option(..., "--config", help="Node config JSON (node_id, site, broker, keys ...)."),
    model: Path = typer.Option(..., "--model", help="Model blob (.tfmb) for the first slot."),
    erase: bool = typer.Option(False, "--erase", help="erase-flash first (wipes the filesystem)."),
    chip: str = typer.Option("esp32", "--chip", help="esptool chip name."),
    baud: int = typer.Option(460800, "--baud"),
    print_only: bool = typer.Option(False, "--print", help="Print the esptool/mpremote steps only."),
) -> None:
    """Flash MicroPython, the node app and a model to an ESP32."""
    from node_firmware import flash
    try:
        flash.flash_esp32(port, firmware, config, model, erase, chip, baud, print_only, echo=typer.echo)
    except flash.FlashError as e:
        typer.echo("tinyfleet flash esp32: %s" % e, err=True)
        raise typer.Exit(1)


@flash_app.command()
def nano33(
    port: Optional[str] = typer.Option(None, "--port", help="Serial port of the board, e.g. /dev/ttyACM0."),
    fqbn: str = typer.Option("arduino:mbed_nano:nano33ble", "--fqbn", help="Board name for arduino-cli."),
    config: Optional[Path] = typer.Option(None, "--config", help="Node config JSON compiled in (node_id, hmac_key ...)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Factory model blob compiled into flash."),
    tflm: Optional[Path] = typer.Option(None, "--tflm", help="Classic path: folder with an exported "
                                        "<name>_model_data.{h,c} run by the Arduino TFLM library."),
    rev2: bool = typer.Option(False, "--rev2", help="Nano 33 BLE Sense Rev2 (BMI270/BMM150, HS300x)."),
    print_only: bool = typer.Option(False, "--print", help="Stage the sketch and print the arduino-cli steps."),
) -> None:
    """Build and upload the Nano 33 BLE Sense firmware with arduino-cli."""
    from node_firmware import flash
    try:
        flash.flash_nano33(port, fqbn, config, model, tflm, rev2, print_only, echo=typer.echo)
    except flash.FlashError as e:
        typer.echo("tinyfleet flash nano33: %s" % e, err=True)
        raise typer.Exit(1)


def bench_runtime(
    models: str = typer.Option(",".join(("sine", "anomaly", "weather", "keyword", "iris")), help="Comma-separated model names."),
    model_dir: Path = typer.Option(Path("models"), help="Holds <name>/<version>/{int8.tflite,model.tfmb}."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Blob size, MicroPython int8 vs float speed, C runtime and generated C size and instructions on the M4."""
    import json as _json

    from node_firmware import bench_runtime as bench

    log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
    result = bench.run(model_dir, [m for m in models.split(",") if m], echo=log)
    if as_json:
        typer.echo(_json.dumps(result, indent=2))
    else:
        for goal, v in result["goals"].items():
            typer.echo(f"{goal:36s} {v['value']!s:>12}  {'met' if v['met'] else 'NOT met'}")
