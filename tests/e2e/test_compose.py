"""docker-compose.yml cannot run here (no Docker engine), so this test validates the file
with docker-compose's own schema check and then runs every service's command directly:
the production mosquitto config with a generated password file and ACL, the cloud on
the local PostgreSQL, the gateway with broker credentials, and the simulated nodes."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml

from tinyfleet.broker import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV = {"TINYFLEET_TOKENS": "viewer:v-tok,operator:o-tok,gateway:g-tok", "TINYFLEET_FLEET_KEY": "ab" * 32,
       "TINYFLEET_GATEWAY_TOKEN": "g-tok", "GW_SITE_A_PASSWORD": "x", "GW_SITE_B_PASSWORD": "y"}


def test_compose_file_is_valid():
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is installed by `make test` (deploy/install.sh)")
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         env={**os.environ, **ENV}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"mosquitto", "postgres", "cloud", "gateway-a", "gateway-b", "nodes"} <= set(services)


def _command(service: str, **subst) -> list[str]:
    argv = yaml.safe_load(COMPOSE.read_text())["services"][service]["command"]
    out = []
    for a in argv:
        for old, new in subst.items():
            a = a.replace(old, new)
        out.append(a)
    return [sys.executable, "-m", "tinyfleet", *out]


def _start(argv, env, log):
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


@pytest.mark.slow
def test_every_service_command_runs_directly(tmp_path, postgres_url):
    # mosquitto: the production config, with paths and ports moved into tmp_path
    sys_cfg = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    auth = tmp_path / "auth"
    gen = subprocess.run([sys.executable, str(ROOT / "deploy/gen_broker_auth.py"), "--nodes", "3",
                          "--sites", "site-a,site-b", "--out", str(auth)], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    creds = dict(line.split("=", 1) for line in (auth / "credentials.env").read_text().split())
    p_auth, p_anon = free_port(), free_port()
    import pwd
    cfg = (sys_cfg.replace("listener 1883", f"listener {p_auth} 127.0.0.1")
           .replace("listener 1884", f"listener {p_anon} 127.0.0.1")
           .replace("/mosquitto/config/passwd", str(auth / "passwd"))
           .replace("/mosquitto/config/acl", str(auth / "acl"))
           .replace("/mosquitto/data/", str(tmp_path) + "/"))
    cfg += f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
    (tmp_path / "mosquitto.conf").write_text(cfg)
    procs = [subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    log = open(tmp_path / "services.log", "wb")
    try:
        wait_port(p_auth)
        wait_port(p_anon)
        cport, mport = free_port(), free_port()
        cloud_env = {**ENV, "TINYFLEET_DB_URL": postgres_url}
        procs.append(_start(_command("cloud", **{"8000": str(cport), "0.0.0.0": "127.0.0.1"})
                            + ["--data", str(tmp_path / "cloud")], cloud_env, log))
        _wait_http(f"http://127.0.0.1:{cport}/readyz", procs[-1], tmp_path)
        procs.append(_start(_command("gateway-a", **{"mosquitto:1883": f"127.0.0.1:{p_auth}",
                                                      "http://cloud:8000": f"http://127.0.0.1:{cport}",
                                                      "/data": str(tmp_path / "gw"), "9100": str(mport)}),
                            {"TINYFLEET_GATEWAY_TOKEN": "g-tok",
                             "TINYFLEET_BROKER_PASSWORD": creds["GW_SITE_A_PASSWORD"]}, log))
        _wait_http(f"http://127.0.0.1:{mport}/healthz", procs[-1], tmp_path)
        procs.append(_start(_command("nodes", **{"mosquitto:1884": f"127.0.0.1:{p_anon}", "20": "3"})
                            + ["--root", str(tmp_path / "sim"), "--sample-ms", "300"], {**ENV}, log))
        # the simulated nodes' telemetry reaches PostgreSQL through gateway and cloud
        deadline = time.time() + 90
        nodes = []
        while time.time() < deadline and len(nodes) < 3:
            nodes = [n for n in httpx.get(f"http://127.0.0.1:{cport}/api/v1/nodes",
                                          headers={"Authorization": "Bearer v-tok"}).json() if n.get("last_result")]
            time.sleep(1)
        assert len(nodes) == 3, (tmp_path / "services.log").read_text()[-3000:]
        # the production listener refuses anonymous clients
        anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon")
        codes = []
        anon.on_connect = lambda c, u, f, rc, p: codes.append(rc)
        anon.connect("127.0.0.1", p_auth)
        anon.loop_start()
        time.sleep(1)
        anon.loop_stop()
        assert codes and codes[0].is_failure
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def _wait_http(url, proc, tmp_path, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, (tmp_path / "services.log").read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not healthy: " + (tmp_path / "services.log").read_text()[-3000:])
