"""Staged OTA rollouts (AWS IoT Jobs style). A deployment splits its nodes into a canary
wave and then constant or exponential waves; each wave goes to the nodes' gateways as an
SSE `deployment` event with a signed manifest. Nodes report execution states through
ingest. After `min_nodes` finished, a failure percentage above `failure_pct` aborts the
rollout, cancels what is still pending and rolls the UPDATED nodes back with a signed
`rollback: true` manifest for the version they ran before (a child deployment `<id>-rb`).

Per-node states are the contract's (QUEUED ... UPDATED, FAILED, ROLLED_BACK) plus two of
the cloud's own: PENDING (not sent yet) and CANCELED (never sent, or withdrawn)."""
from __future__ import annotations

import secrets
import threading
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Deployment, DeploymentNode, Node, Secret
from cloud.services import ServiceError, events, fleet, registry
from contract import protocol

PENDING = "PENDING"
CANCELED = "CANCELED"
DONE = (protocol.UPDATED, protocol.FAILED, protocol.ROLLED_BACK, CANCELED)
ACTIVE = ("running", "paused")
FINAL = ("succeeded", "aborted", "canceled")

# One in-process lock serialises the engine tick and ingest of OTA states, so a timeout
# decision never overwrites a state that just arrived (SQLite has no row locks).
LOCK = threading.RLock()


class DeploymentError(ServiceError):
    pass


# ------------------------------------------------------------------ keys and manifests

def fleet_key(s: Session, settings) -> bytes:
    """settings.fleet_key, or a key generated once and kept in the database."""
    if settings.fleet_key:
        return bytes.fromhex(settings.fleet_key)
    row = s.get(Secret, "fleet_key")
    if row is None:
        row = Secret(name="fleet_key", value=secrets.token_hex(32))
        s.add(row)
        s.flush()
    return bytes.fromhex(row.value)


@lru_cache(maxsize=64)
def _golden(sha: str, blob: bytes, count: int) -> tuple:
    pairs = registry.golden(blob, count)
    kept, size = [], 0
    for i, o in pairs:                      # keep manifests well inside MAX_JSON_BYTES
        size += (len(i) + len(o)) * 4 // 3 + 8
        if kept and size > protocol.MAX_JSON_BYTES // 2:
            break
        kept.append((i, o))
    return tuple(kept)


def manifests(s: Session, settings, dep_id: str, model: str, version: int, nodes: list[str],
              rollback: bool) -> tuple[dict, dict, str]:
    """(fleet manifest, {node: per-node manifest}, sha256) for one version."""
    mv = registry.must_get(s, model, version)
    data = registry.blob(mv)
    try:
        gold = list(_golden(mv.sha256, data, settings.golden_count))
    except Exception as e:  # the reference runtime cannot run it: nodes could not self-test it either
        raise DeploymentError(409, f"{model} v{version}: no golden vectors from the reference runtime: {e}")
    m = protocol.build_manifest(fleet_key(s, settings), "fleet", dep_id, model, version, data,
                                settings.chunk_size, gold, rollback=rollback)
    per_node = {}
    for n in nodes:
        hexkey = settings.node_keys.get(n)
        if hexkey:
            per_node[n] = protocol.build_manifest(bytes.fromhex(hexkey), "node", dep_id, model, version, data,
                                                  settings.chunk_size, gold, rollback=rollback)
    return m, per_node, mv.sha256


def _send(s: Session, settings, d: Deployment, dns: list[DeploymentNode], now: int, rollback: bool) -> None:
    """One `deployment` event per (gateway, version) for these nodes; marks them QUEUED."""
    node_rows = {n.id: n for n in s.scalars(select(Node).where(Node.id.in_([dn.node for dn in dns])))}
    groups: dict[tuple, list[DeploymentNode]] = {}
    for dn in dns:
        n = node_rows.get(dn.node)
        groups.setdefault(((n.gateway if n else None) or "", dn.version), []).append(dn)
    for (gateway, version), members in sorted(groups.items()):
        ids = [dn.node for dn in members]
        m, per_node, sha = manifests(s, settings, d.id, d.model, version, ids, rollback)
        events.publish(s, events.gateway_channel(gateway), "deployment",
                       {"deployment": d.id, "manifest": m, "nodes": ids,
                        "blob_url": protocol.BLOB_PATH.format(sha256=sha), "node_manifests": per_node})
        for dn in members:
            dn.state, dn.reason, dn.sent_at, dn.updated = protocol.QUEUED, None, now, now


def _cancel_event(s: Session, d: Deployment, dns: list[DeploymentNode]) -> None:
    node_rows = {n.id: n for n in s.scalars(select(Node).where(Node.id.in_([dn.node for dn in dns])))}
    groups: dict[str, list[str]] = {}
    for dn in dns:
        n = node_rows.get(dn.node)
        groups.setdefault((n.gateway if n else None) or "", []).append(dn.node)
    for gateway, ids in sorted(groups.items()):
        events.publish(s, events.gateway_channel(gateway), "cancel", {"deployment": d.id, "nodes": ids})


# ------------------------------------------------------------------ creation

def wave_sizes(n: int, canary: int, mode: str, size: int) -> list[int]:
    out = []
    if canary > 0 and n > 0:
        out.append(min(canary, n))
    left, k = n - sum(out), 0
    while left > 0:
        step = size if mode == "constant" else size * (2 ** k)
        out.append(min(step, left))
        left -= out[-1]
        k += 1
    return out


def resolve_targets(s: Session, target: dict, model: str) -> list[Node]:
    """Explicit node ids are taken as given; a site or tag target means the nodes there
    that run `model` (a weather station is no target for an anomaly model)."""
    if not any(target.get(k) for k in ("site", "tags", "nodes")):
        raise DeploymentError(422, "target needs at least one of site, tags or nodes")
    q = select(Node).order_by(Node.id)
    if target.get("site"):
        q = q.where(Node.site == target["site"])
    if target.get("nodes"):
        wanted = list(dict.fromkeys(target["nodes"]))
        known = set(s.scalars(select(Node.id).where(Node.id.in_(wanted))))
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise DeploymentError(422, f"unknown nodes: {', '.join(unknown[:20])}")
        q = q.where(Node.id.in_(wanted))
    nodes = list(s.scalars(q))
    if target.get("tags"):
        nodes = [n for n in nodes if set(target["tags"]) <= set(n.tags or [])]
    if not target.get("nodes"):
        nodes = fleet.running(s, nodes, model)
    if not nodes:
        raise DeploymentError(422, "no node matches the target")
    return nodes


def create(s: Session, settings, body: dict) -> Deployment:
    mv = registry.get(s, body["model"], body["version"])
    if mv is None:
        raise DeploymentError(404, f"model {body['model']!r} has no version {body['version']}")
    if mv.status in ("rejected", "retired"):
        raise DeploymentError(409, f"{mv.name} v{mv.version} is {mv.status} and cannot be deployed")
    if mv.sha256 is None:
        raise DeploymentError(409, f"{mv.name} v{mv.version} has no blob")
    nodes = resolve_targets(s, body["target"], mv.name)
    busy = sorted(set(s.scalars(
        select(DeploymentNode.node).join(Deployment, Deployment.id == DeploymentNode.deployment)
        .where(Deployment.state.in_(ACTIVE), Deployment.model == mv.name, DeploymentNode.state.not_in(DONE),
               DeploymentNode.node.in_([n.id for n in nodes])))))
    if busy:
        raise DeploymentError(409, f"nodes already in a running {mv.name} deployment: {', '.join(busy[:20])}")
    now = events.now_ms()
    d = Deployment(id="d-" + secrets.token_hex(4), model=mv.name, version=mv.version, target=body["target"],
                   canary=body["canary"], wave=body["wave"], abort=body["abort"], state="running",
                   created=now, updated=now, next_wave_at=now)
    s.add(d)
    sizes = wave_sizes(len(nodes), body["canary"], body["wave"]["mode"], body["wave"]["size"])
    i = 0
    for w, size in enumerate(sizes):
        for n in nodes[i:i + size]:
            s.add(DeploymentNode(deployment=d.id, node=n.id, wave=w, version=mv.version,
                                 prev_version=(n.models or {}).get(mv.name), state=PENDING, updated=now))
        i += size
    s.flush()
    _advance(s, settings, d, now)
    events.publish(s, events.STREAM, "deployment", summary(s, d))
    return d


# ------------------------------------------------------------------ the engine

def _nodes(s: Session, d: Deployment) -> list[DeploymentNode]:
    return list(s.scalars(select(DeploymentNode).where(DeploymentNode.deployment == d.id)
                          .order_by(DeploymentNode.wave, DeploymentNode.node)))


def _failure(dns: list[DeploymentNode]) -> tuple[int, int, float]:
    """(finished, failed, failure %). A node that rolled itself back counts as failed;
    one rolled back by our own abort ("aborted") does not."""
    finished = [dn for dn in dns if dn.state in (protocol.UPDATED, protocol.FAILED, protocol.ROLLED_BACK)]
    failed = sum(dn.state == protocol.FAILED or (dn.state == protocol.ROLLED_BACK and dn.reason != "aborted")
                 for dn in finished)
    return len(finished), failed, (100.0 * failed / len(finished)) if finished else 0.0


def _advance(s: Session, settings, d: Deployment, now: int) -> bool:
    """Timeouts, abort rule, next wave, completion. True when something changed."""
    dns = _nodes(s, d)
    changed = False
    limit = int(settings.ota_timeout_s * 1000)
    for dn in dns:
        if dn.state not in DONE and dn.state != PENDING and dn.sent_at is not None and now - dn.sent_at > limit:
            dn.state, dn.reason, dn.updated = protocol.FAILED, "timeout", now
            changed = True
    if d.rollback_of is None:
        finished, failed, pct = _failure(dns)
        if finished >= d.abort["min_nodes"] and pct > d.abort["failure_pct"]:
            abort(s, settings, d, f"failure rate {pct:.0f}% > {d.abort['failure_pct']:g}% after {finished} nodes",
                  now, dns)
            return True
    if d.state == "running":
        sent = [dn.wave for dn in dns if dn.state != PENDING]
        current = max(sent) if sent else -1
        pending = sorted({dn.wave for dn in dns if dn.state == PENDING})
        canary_open = d.canary > 0 and current == 0 and any(dn.wave == 0 and dn.state not in DONE for dn in dns)
        if pending and not canary_open and now >= (d.next_wave_at or 0):
            wave = pending[0]
            _send(s, settings, d, [dn for dn in dns if dn.wave == wave], now, rollback=d.rollback_of is not None)
            d.next_wave_at = now + int(d.wave.get("interval_s", 0) * 1000)
            changed = True
        elif not pending and all(dn.state in DONE for dn in dns):
            d.state = "succeeded"
            changed = True
    if changed:
        d.updated = now
    return changed


def tick(s: Session, settings, now: int | None = None) -> int:
    """One engine pass over the running and paused deployments; returns how many changed."""
    now = now if now is not None else events.now_ms()
    n = 0
    q = select(Deployment).where(Deployment.state.in_(ACTIVE)).order_by(Deployment.created)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    for d in list(s.scalars(q)):
        if _advance(s, settings, d, now):
            s.flush()
            events.publish(s, events.STREAM, "deployment", summary(s, d))
            n += 1
    return n


def advance(s: Session, settings, dep_ids) -> None:
    """Runs the engine step now for deployments that just got states (no tick lag)."""
    now = events.now_ms()
    for dep_id in sorted(dep_ids):
        d = s.get(Deployment, dep_id)
        if d is not None and d.state in ACTIVE and _advance(s, settings, d, now):
            s.flush()
            events.publish(s, events.STREAM, "deployment", summary(s, d))


def _rollback(s: Session, settings, d: Deployment, updated: list[DeploymentNode], now: int) -> list[str]:
    """Sends signed rollback manifests to UPDATED nodes; returns nodes that cannot go back."""
    impossible, ok = [], []
    for dn in updated:
        mv = registry.get(s, d.model, dn.prev_version) if dn.prev_version is not None else None
        if mv is None or mv.sha256 is None:
            impossible.append(dn.node)
        else:
            ok.append(dn)
    if not ok:
        return impossible
    rb_id = d.id + "-rb"
    rb = s.get(Deployment, rb_id)
    if rb is None:
        rb = Deployment(id=rb_id, model=d.model, version=ok[0].prev_version, target={"nodes": []}, canary=0,
                        wave={"mode": "constant", "size": len(ok), "interval_s": 0},
                        abort={"failure_pct": 100.0, "min_nodes": 1}, state="running", rollback_of=d.id,
                        created=now, updated=now, next_wave_at=now)
        s.add(rb)
        d.rollback = rb_id
        s.flush()
    rb.state, rb.updated = "running", now
    rb.target = {"nodes": sorted(set(rb.target.get("nodes", [])) | {dn.node for dn in ok})}
    rows = []
    for dn in ok:
        row = s.get(DeploymentNode, (rb_id, dn.node))
        if row is None:
            row = DeploymentNode(deployment=rb_id, node=dn.node, wave=0, version=dn.prev_version,
                                 prev_version=d.version, state=PENDING, updated=now)
            s.add(row)
        rows.append(row)
    s.flush()
    _send(s, settings, rb, rows, now, rollback=True)
    return impossible


def abort(s: Session, settings, d: Deployment, reason: str, now: int | None = None,
          dns: list[DeploymentNode] | None = None) -> Deployment:
    if d.state not in ACTIVE:
        raise DeploymentError(409, f"deployment {d.id} is {d.state}")
    now = now or events.now_ms()
    dns = dns if dns is not None else _nodes(s, d)
    inflight = [dn for dn in dns if dn.state not in DONE and dn.state != PENDING]
    for dn in dns:
        if dn.state == PENDING or dn in inflight:
            dn.state, dn.reason, dn.updated = CANCELED, "aborted", now
    if inflight:
        _cancel_event(s, d, inflight)
    d.state, d.reason, d.updated = "aborted", reason, now
    stuck = _rollback(s, settings, d, [dn for dn in dns if dn.state == protocol.UPDATED], now)
    if stuck:
        d.reason += f"; no previous version to roll back to on {', '.join(stuck[:20])}"
    return d


def cancel(s: Session, d: Deployment) -> Deployment:
    if d.state not in ACTIVE:
        raise DeploymentError(409, f"deployment {d.id} is {d.state}")
    now = events.now_ms()
    dns = _nodes(s, d)
    inflight = [dn for dn in dns if dn.state not in DONE and dn.state != PENDING]
    for dn in dns:
        if dn.state == PENDING or dn in inflight:
            dn.state, dn.reason, dn.updated = CANCELED, None, now
    if inflight:
        _cancel_event(s, d, inflight)
    d.state, d.reason, d.updated = "canceled", "canceled by operator", now
    return d


def pause(s: Session, d: Deployment) -> Deployment:
    if d.state != "running":
        raise DeploymentError(409, f"deployment {d.id} is {d.state}, not running")
    d.state, d.updated = "paused", events.now_ms()
    return d


def resume(s: Session, settings, d: Deployment) -> Deployment:
    if d.state != "paused":
        raise DeploymentError(409, f"deployment {d.id} is {d.state}, not paused")
    now = events.now_ms()
    d.state, d.updated, d.next_wave_at = "running", now, now
    _advance(s, settings, d, now)
    return d


def apply_state(s: Session, st: dict, node: Node | None, settings=None) -> bool:
    """An OTA execution state from ingest. States for unknown deployments or nodes, for
    another version, or that would leave a final state are ignored (replays are harmless)."""
    dn = s.get(DeploymentNode, (st["deployment"], st["node"]))
    if dn is None or dn.version != st["version"] or dn.state == PENDING:
        return False
    d = s.get(Deployment, dn.deployment)
    if d is None or d.model != st["model"]:
        return False
    new, now = st["state"], events.now_ms()
    late_update = dn.state == CANCELED and new == protocol.UPDATED and d.state == "aborted"
    if dn.state in DONE and not (dn.state == protocol.UPDATED and new == protocol.ROLLED_BACK) and not late_update:
        return False
    dn.state, dn.updated = new, now
    dn.reason = st.get("reason") if new in (protocol.FAILED, protocol.ROLLED_BACK) else None
    if "progress" in st:
        dn.progress = float(st["progress"])
    if new == protocol.UPDATED and node is not None:
        node.models = {**(node.models or {}), d.model: dn.version}
    if new == protocol.ROLLED_BACK and node is not None and dn.prev_version is not None and not d.rollback_of:
        node.models = {**(node.models or {}), d.model: dn.prev_version}
    if d.rollback_of and new in (protocol.UPDATED, protocol.ROLLED_BACK):
        parent = s.get(DeploymentNode, (d.rollback_of, dn.node))
        if parent is not None and parent.state == protocol.UPDATED:
            parent.state, parent.reason, parent.updated = protocol.ROLLED_BACK, "aborted", now
    if late_update and settings is not None:
        _rollback(s, settings, d, [dn], now)
    events.publish(s, events.STREAM, "deployment", {"id": d.id, "node": dn.node, "state": dn.state,
                                                      "reason": dn.reason})
    return True


# ------------------------------------------------------------------ views

def get(s: Session, dep_id: str) -> Deployment:
    d = s.get(Deployment, dep_id)
    if d is None:
        raise DeploymentError(404, f"no deployment {dep_id!r}")
    return d


def summary(s: Session, d: Deployment, dns: list[DeploymentNode] | None = None) -> dict:
    dns = dns if dns is not None else _nodes(s, d)
    counts: dict[str, int] = {}
    for dn in dns:
        counts[dn.state] = counts.get(dn.state, 0) + 1
    waves = []
    for w in sorted({dn.wave for dn in dns}):
        members = [dn for dn in dns if dn.wave == w]
        states: dict[str, int] = {}
        for dn in members:
            states[dn.state] = states.get(dn.state, 0) + 1
        sent = [dn.sent_at for dn in members if dn.sent_at is not None]
        waves.append({"index": w, "canary": w == 0 and d.canary > 0, "size": len(members),
                      "sent_at": min(sent) if sent else None, "states": states,
                      "finished": sum(dn.state in DONE for dn in members)})
    return {"id": d.id, "model": d.model, "version": d.version, "target": d.target, "canary": d.canary,
            "wave": d.wave, "abort": d.abort, "state": d.state, "reason": d.reason, "rollback_of": d.rollback_of,
            "rollback": d.rollback, "created": d.created, "updated": d.updated, "counts": counts,
            "failure_pct": _failure(dns)[2], "waves": waves}


def node_out(dn: DeploymentNode) -> dict:
    return {"node": dn.node, "wave": dn.wave, "version": dn.version, "prev_version": dn.prev_version,
            "state": dn.state, "reason": dn.reason, "progress": dn.progress, "sent_at": dn.sent_at,
            "updated": dn.updated}


def detail(s: Session, d: Deployment) -> dict:
    dns = _nodes(s, d)
    return {**summary(s, d, dns), "nodes": [node_out(dn) for dn in dns]}


def list_all(s: Session, limit: int = 200) -> list[dict]:
    return [summary(s, d) for d in s.scalars(select(Deployment).order_by(Deployment.created.desc()).limit(limit))]
