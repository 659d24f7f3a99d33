"""Runs the tiers as real child processes (the same commands docker-compose runs),
with their logs in files, health checks, and the faults a test can inject:
pause (SIGSTOP), resume and SIGKILL."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def tinyfleet_argv(*args: str) -> list[str]:
    """`tinyfleet ARGS` with this interpreter, so it works inside or outside the venv."""
    return [sys.executable, "-m", "tinyfleet", *args]


class Service:
    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None,
                 health_url: str | None = None):
        self.name, self.argv, self.health_url = name, argv, health_url
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = Path(logdir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode if self.proc else '?'}; "
                                   f"last log lines:\n{self.tail()}")
            if self.health_url is None:
                return
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy at {self.health_url} after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _signal_group(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (resuming it first if paused), then SIGKILL."""
        if not self.alive():
            return
        self.resume()
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
