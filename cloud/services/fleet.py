"""Fleet views: nodes, sites, telemetry, anomaly rates. Online = seen within the
online window and not last reported offline."""
from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from cloud.models import Node, Site, Telemetry


def is_online(n: Node, now: int, window_s: float) -> bool:
    return n.state != "offline" and n.last_seen >= now - int(window_s * 1000)


def node_brief(n: Node, now: int, window_s: float) -> dict:
    return {"id": n.id, "site": n.site, "gateway": n.gateway, "board": n.board, "fw": n.fw,
            "runtime": n.runtime, "models": dict(n.models or {}), "last_seen": n.last_seen,
            "online": is_online(n, now, window_s), "tags": list(n.tags or []), "last_result": n.last_result,
            "free_mem": n.free_mem, "uptime": n.uptime}


def anomaly_rates(s: Session, since: int, group=Telemetry.node, where=()) -> dict[str, tuple[float, int]]:
    """{key: (rate, samples)} over records of the anomaly model since `since` (ms)."""
    flagged = func.sum(case((Telemetry.anomaly.is_(True), 1), else_=0))
    q = (select(group, flagged, func.count()).where(Telemetry.anomaly.is_not(None), Telemetry.ts >= since, *where)
         .group_by(group))
    return {k: (float(a or 0) / c, c) for k, a, c in s.execute(q) if c}


def node_out(n: Node, now: int, window_s: float, rates: dict) -> dict:
    out = node_brief(n, now, window_s)
    rate = rates.get(n.id)
    out["anomaly_rate"] = rate[0] if rate else None
    return out


def running(s: Session, nodes: list[Node], model: str) -> list[Node]:
    """The nodes that run `model`: their heartbeat lists it, or they sent telemetry of it."""
    with_telemetry = set(s.scalars(select(Telemetry.node).where(Telemetry.model == model).distinct()))
    return [n for n in nodes if model in (n.models or {}) or n.id in with_telemetry]


def list_nodes(s: Session, now: int, settings, site: str | None = None, model: str | None = None) -> list[dict]:
    q = select(Node).order_by(Node.id)
    if site:
        q = q.where(Node.site == site)
    nodes = list(s.scalars(q))
    if model:
        nodes = running(s, nodes, model)
    rates = anomaly_rates(s, now - int(settings.anomaly_window_s * 1000))
    return [node_out(n, now, settings.online_window_s, rates) for n in nodes]


def list_sites(s: Session, now: int, settings) -> list[dict]:
    rates = anomaly_rates(s, now - int(settings.anomaly_window_s * 1000), group=Telemetry.site)
    nodes = list(s.scalars(select(Node)))
    out = []
    for site in s.scalars(select(Site).order_by(Site.id)):
        mine = [n for n in nodes if n.site == site.id]
        rate = rates.get(site.id)
        out.append({"id": site.id, "gateway": site.gateway, "nodes": len(mine),
                    "online": sum(is_online(n, now, settings.online_window_s) for n in mine),
                    "last_seen": site.last_seen, "anomaly_rate": rate[0] if rate else None})
    return out


def telemetry_out(t: Telemetry) -> dict:
    return {"node": t.node, "seq": t.seq, "ts": t.ts, "site": t.site, "model": t.model,
            "model_version": t.model_version, "result": t.result, "score": t.score, "features": t.features}


def telemetry(s: Session, node: str | None = None, model: str | None = None, since: int | None = None,
              limit: int = 500, site: str | None = None) -> list[dict]:
    """Records in time order: from `since` onwards, or else the latest `limit`."""
    q = select(Telemetry)
    if node:
        q = q.where(Telemetry.node == node)
    if model:
        q = q.where(Telemetry.model == model)
    if site:
        q = q.where(Telemetry.site == site)
    if since is not None:
        rows = list(s.scalars(q.where(Telemetry.ts >= since).order_by(Telemetry.ts, Telemetry.seq).limit(limit)))
    else:
        rows = list(s.scalars(q.order_by(Telemetry.ts.desc(), Telemetry.seq.desc()).limit(limit)))[::-1]
    return [telemetry_out(t) for t in rows]


def online_count(s: Session, now: int, window_s: float) -> int:
    return int(s.scalar(select(func.count()).select_from(Node).where(
        Node.last_seen >= now - int(window_s * 1000), (Node.state.is_(None)) | (Node.state != "offline"))) or 0)
