"""Starts a private mosquitto on a free loopback port with a generated config.
Used by `tinyfleet demo` and by the test fixtures, so both exercise the broker
users run in production. Queue limits are raised because mosquitto otherwise
silently drops QoS 1 messages to a slow subscriber.

`make_broker()` picks mosquitto when it is installed, else (or when
TINYFLEET_BROKER=embedded) `EmbeddedBroker`, the small asyncio broker of
tinyfleet/embedded_broker.py in a child process; both have the same interface."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class _BrokerProcess:
    """A broker in a child process on 127.0.0.1:`port`: start, stop, kill, restart, `with`."""

    kind = "broker"
    dir: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            err = (self.dir / "stderr.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.kind} did not start on port {self.port}: {err}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Hard crash (SIGKILL), for fault injection."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Mosquitto(_BrokerProcess):
    """One private broker. `users` maps user -> password and turns on auth;
    `acl` is the text of a mosquitto ACL file (e.g. `pattern write tinyfleet/+/%u/#`)."""

    kind = "mosquitto"

    def __init__(self, workdir: Path | None = None, port: int | None = None,
                 users: dict[str, str] | None = None, acl: str | None = None):
        if not shutil.which("mosquitto"):
            raise RuntimeError("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients")
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tinyfleet-mosquitto-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users = users or {}
        self.proc: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            # mosquitto started as root drops to user 'mosquitto', which cannot read our files
            "user " + (pwd.getpwuid(os.geteuid()).pw_name),
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
            "log_dest file " + str(self.dir / "mosquitto.log"),
            "log_type error",
            "log_type warning",
        ]
        if self.users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            lines.append(f"acl_file {self.dir / 'acl'}")
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return ["mosquitto", "-c", str(self.config)]

    def describe(self) -> str:
        return f"mosquitto, private config in {self.dir}"


# Measured on the dev machine with paho clients on loopback (docs/broker.md)
EMBEDDED_LIMITS = ("no persistence across restarts, no auth/ACL (any login is accepted), no TLS, "
                   "QoS 2 downgraded to 1, about half the throughput of mosquitto (~15k msg/s QoS 0, ~7k QoS 1)")


class EmbeddedBroker(_BrokerProcess):
    """The fallback when mosquitto is missing: tinyfleet/embedded_broker.py in a child
    process. Good enough for the demo and tests on one machine, nothing more."""

    kind = "embedded"

    def __init__(self, workdir: Path | None = None, port: int | None = None, reason: str = "forced"):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tinyfleet-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.reason = reason
        self.proc = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tinyfleet.embedded_broker", "--host", "127.0.0.1", "--port", str(self.port)]

    def describe(self) -> str:
        return f"embedded fallback broker ({self.reason}); its limits: {EMBEDDED_LIMITS}"


def make_broker(workdir: Path | None = None, port: int | None = None) -> Mosquitto | EmbeddedBroker:
    """mosquitto when it is on PATH, else the embedded fallback. TINYFLEET_BROKER=embedded
    or =mosquitto forces one (auto, the default, chooses)."""
    choice = os.environ.get("TINYFLEET_BROKER", "auto").strip().lower() or "auto"
    if choice not in ("auto", "mosquitto", "embedded"):
        raise ValueError(f"TINYFLEET_BROKER must be auto, mosquitto or embedded, not {choice!r}")
    if choice == "mosquitto" or (choice == "auto" and shutil.which("mosquitto")):
        return Mosquitto(workdir, port)
    reason = "TINYFLEET_BROKER=embedded" if choice == "embedded" else "mosquitto is not installed"
    return EmbeddedBroker(workdir, port, reason)


if __name__ == "__main__":  # manual use: python -m tinyfleet.broker
    with make_broker() as b:
        print(b.url, "-", b.describe(), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    os._exit(0)
