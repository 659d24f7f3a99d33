"""Writes a mosquitto password file and ACL for a fleet: one user per node (a node may
write only its own topics and read only its own OTA topics) and one per gateway.

    python deploy/gen_broker_auth.py --nodes 20 --sites site-a,site-b --out deploy/mosquitto
"""
import argparse
import secrets
import subprocess
from pathlib import Path

ACL = """# gateways: the whole tree (they subscribe with $share/ groups)
{gateway_lines}
# nodes: only their own topics (%u = MQTT username = node id)
pattern write tinyfleet/+/%u/telemetry
pattern write tinyfleet/+/%u/status
pattern write tinyfleet/+/%u/heartbeat
pattern write tinyfleet/+/%u/ota/request
pattern write tinyfleet/+/%u/ota/state
pattern read tinyfleet/+/%u/ota/#
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--sites", default="site-a,site-b")
    ap.add_argument("--out", default="deploy/mosquitto")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sites = args.sites.split(",")
    creds = {f"gw-{s}": secrets.token_urlsafe(16) for s in sites}
    creds.update({f"node-{i:03d}": secrets.token_urlsafe(16) for i in range(args.nodes)})
    passwd = out / "passwd"
    passwd.write_text("")
    for user, pw in creds.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True)
    gw = "\n".join(f"user gw-{s}\ntopic readwrite tinyfleet/{s}/#" for s in sites)
    (out / "acl").write_text(ACL.format(gateway_lines=gw))
    env = "".join(f"{u}={p}\n" for u, p in creds.items())
    env += "".join(f"GW_SITE_{s.split('-')[-1].upper()}_PASSWORD={creds[f'gw-{s}']}\n" for s in sites)
    (out / "credentials.env").write_text(env)
    print(f"wrote {passwd}, {out / 'acl'} and {out / 'credentials.env'} for {len(creds)} users")


if __name__ == "__main__":
    main()
