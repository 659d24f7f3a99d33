"""Tokens, keys and message builders shared by the cloud tests."""
import time

TOKENS = {"tv": "viewer", "to": "operator", "tg": "gateway"}
VIEWER, OPERATOR, GATEWAY = ({"Authorization": f"Bearer {t}"} for t in TOKENS)
FLEET_KEY = "11" * 32
NODE_KEY = "22" * 32


def telemetry(node, seq, model="sine", result=0.5, score=0.9, ts=None, features=None):
    rec = {"node": node, "seq": seq, "ts": ts if ts is not None else int(time.time() * 1000) + seq,
           "model": model, "model_version": 1, "result": result, "score": score}
    if features is not None:
        rec["features"] = features
    return rec


def heartbeat(node, models=None, board="esp32"):
    return {"v": 1, "node": node, "ts": int(time.time() * 1000), "fw": "0.1.0", "runtime": 1, "board": board,
            "models": models if models is not None else {"sine": 1}, "free_mem": 60000, "uptime": 10}


def batch(site="plant-a", gateway="gw-1", batch_id="b-1", **lists):
    from contract import protocol
    return protocol.ingest_batch(gateway, site, batch_id, **lists)
