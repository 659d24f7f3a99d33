"""Store-and-forward: a 60 s cloud outage and a SIGKILLed gateway lose nothing and
store nothing twice, telemetry and the other kinds alike."""
import json
import time

import pytest

from gw_harness import wait_for
from sim_nodes import Publishers, StatePublishers


def assert_exactly_once(cloud, sent, attempted=None):
    stored = wait_for(lambda: (lambda s: s if sent <= set(s) else None)(cloud.stored()), 90,
                      f"{len(sent)} records in the cloud", step=0.5)
    if attempted is None:
        assert set(stored) == sent                  # nothing lost, nothing invented
    else:                                           # a publish whose ack died with the broker may or may not be there
        assert sent <= set(stored) <= attempted
    # (node, seq) is the cloud's primary key, so "once" is its job; the gateway's is "none lost",
    # and the duplicates it forwarded after crashes are reported by the caller.
    return cloud.count("SELECT COALESCE(SUM(duplicates), 0) FROM batches")


@pytest.mark.slow
def test_cloud_down_60s_then_everything_exactly_once(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    pubs = Publishers(mosquitto.port, n=10, rate_per_node=10).start(seconds=66)
    time.sleep(3)
    cloud.kill()
    t_down = time.monotonic()
    time.sleep(30)
    depth_mid = gw.metric("tinyfleet_gateway_queue_depth")
    time.sleep(60 - (time.monotonic() - t_down))
    depth_before = gw.metric("tinyfleet_gateway_queue_depth")
    cloud.start()
    sent = pubs.join()
    resent = assert_exactly_once(cloud, sent)
    print(f"outage: {len(sent)} records sent, all stored once; queue depth {depth_mid:.0f} at 30 s, "
          f"{depth_before:.0f} at 60 s; cloud absorbed {resent} duplicates")
    assert 0 < depth_mid < depth_before            # the outbox really held the data
    assert gw.metric("tinyfleet_gateway_cloud_errors_total", kind="unreachable") > 0
    assert wait_for(lambda: gw.metric("tinyfleet_gateway_queue_depth") == 0 or None, 10, "empty outbox")
    assert gw.drops() == {}


def test_gateway_sigkill_mid_stream_exactly_once(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    pubs = Publishers(mosquitto.port, n=10, rate_per_node=50).start(seconds=8)
    kills = 0
    for pause in (2.0, 2.0):
        time.sleep(pause)
        gw.kill()
        kills += 1
        time.sleep(0.5)
        gw.start()
    sent = pubs.join()
    resent = assert_exactly_once(cloud, sent)
    dedup = gw.metric("tinyfleet_gateway_duplicates_total") + gw.metric("tinyfleet_gateway_redelivered_total")
    print(f"sigkill x{kills}: {len(sent)} records sent, all stored once; redeliveries the last gateway "
          f"dropped {dedup:.0f}, duplicates the cloud absorbed {resent}")
    assert len(sent) > 4000


def test_gateway_sigkill_mid_stream_stores_no_heartbeat_status_or_ota_state_twice(mosquitto, cloud, gateway_factory):
    """Kills land anywhere: between the outbox commit and the PUBACK (the broker redelivers),
    and between the cloud's 2xx and the outbox delete (the gateway resends)."""
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    load = Publishers(mosquitto.port, n=10, rate_per_node=50).start(seconds=9)      # keeps batches and POSTs busy
    states = StatePublishers(mosquitto.port, n=5, rate_per_node=20).start(seconds=9)
    kills = recognised = 0
    for pause in (1.5, 1.0, 1.5, 1.0, 1.5):
        time.sleep(pause)
        recognised += gw.metric("tinyfleet_gateway_redelivered_total")
        gw.kill()
        kills += 1
        time.sleep(0.3)
        gw.start()
    sent = states.join()
    assert_exactly_once(cloud, load.join())

    def stored(kind):
        return [json.loads(b) for (b,) in cloud.db.execute("SELECT body FROM records WHERE kind = ?", (kind,))]

    key = lambda m: json.dumps(m, sort_keys=True)      # noqa: E731
    for kind in ("status", "ota_state"):               # QoS 1: every acked one, once
        wait_for(lambda: len(stored(kind)) >= len(sent[kind]) or None, 60, f"{len(sent[kind])} {kind} records")
    wait_for(lambda: gw.metric("tinyfleet_gateway_queue_depth") == 0 or None, 30, "an empty outbox")
    got = {kind: stored(kind) for kind in sent}
    absorbed = cloud.count("SELECT COALESCE(SUM(record_duplicates), 0) FROM batches")
    recognised += gw.metric("tinyfleet_gateway_redelivered_total")
    print(f"sigkill x{kills}: {', '.join(f'{len(got[k])} {k}' for k in got)} stored; broker redeliveries the "
          f"gateway recognised {recognised:.0f}, resends the cloud absorbed by rid {absorbed}")
    for kind, msgs in got.items():
        assert len({key(m) for m in msgs}) == len(msgs), f"a {kind} was stored twice"
    for kind in ("status", "ota_state"):
        assert {key(m) for m in got[kind]} == {key(m) for m in sent[kind]}
    # QoS 0: the broker drops heartbeats while no gateway is up (each restart takes about a second)
    assert {key(m) for m in got["heartbeat"]} <= {key(m) for m in sent["heartbeat"]}
    assert len(got["heartbeat"]) > 0.2 * len(sent["heartbeat"])


def test_a_resent_row_keeps_its_rid_and_is_stored_once(tmp_path, cloud):
    """The crash window between the cloud's 2xx and the outbox delete, played deterministically:
    the same rows go up twice (the second time inside a larger batch)."""
    from gateway.config import GatewayConfig
    from gateway.metrics import Metrics
    from gateway.queue import Outbox
    from gateway.uplink import Uplink
    from contract import protocol as p
    from gw_harness import TOKEN
    ob = Outbox(tmp_path / "o.sqlite", 10**9)
    st = p.encode(p.STATUS, p.status("n-1", "online", 1))
    ob.put([("status", 1, st), ("telemetry", 1, b'{"seq":1,"ts":1,"model":"m","model_version":1,"result":0,"score":0.5,"node":"n-1"}')])
    up = Uplink(GatewayConfig(broker="mqtt://127.0.0.1:1", cloud=cloud.url, site="site-a", token=TOKEN), ob, Metrics())
    first = ob.peek(10)
    up.post([(r.kind, r.body if r.kind == "telemetry" else up._record(r)) for r in first], "b-1")   # answer lost
    ob.put([("status", 1, p.encode(p.STATUS, p.status("n-1", "offline", 2)))])
    assert up.ship(ob.peek(10))
    assert [json.loads(b) for (b,) in cloud.db.execute("SELECT body FROM records ORDER BY rowid")] == \
        [p.status("n-1", "online", 1), p.status("n-1", "offline", 2)]
    assert cloud.count("SELECT SUM(record_duplicates) FROM batches") == 1 and len(cloud.stored()) == 1


def test_full_outbox_keeps_the_newest_and_counts_what_it_dropped(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url, "--queue-max-mb", "0.02").start()   # ~20 KB of records
    cloud.kill()
    pubs = Publishers(mosquitto.port, n=2, rate_per_node=100).start(seconds=4)
    sent = pubs.join()
    wait_for(lambda: gw.drops().get("queue_full", 0) + gw.metric("tinyfleet_gateway_queue_depth") == len(sent), 10,
             "every record queued or dropped")
    dropped = gw.drops()["queue_full"]
    cloud.start()
    wait_for(lambda: gw.metric("tinyfleet_gateway_queue_depth") == 0 or None, 30, "an empty outbox")
    stored = set(cloud.stored())
    print(f"queue full: {len(sent)} sent, {len(stored)} stored, {dropped:.0f} dropped as queue_full")
    assert stored < sent
    assert len(stored) + dropped == len(sent)
    for node in {n for n, _ in sent}:       # what survived is the newest of each node
        kept = sorted(s for n, s in stored if n == node)
        assert kept == list(range(kept[0], max(s for n, s in sent if n == node) + 1))


def test_broker_restart_mid_stream_exactly_once(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    pubs = Publishers(mosquitto.port, n=5, rate_per_node=50).start(seconds=6)
    time.sleep(2)
    mosquitto.restart(down_for=1.0)
    sent = pubs.join()
    resent = assert_exactly_once(cloud, sent, pubs.attempted)
    print(f"broker restart: {len(sent)} records sent, all stored once; cloud absorbed {resent} duplicates")
    assert wait_for(lambda: gw.metric("tinyfleet_gateway_mqtt_connected") == 1 or None, 10, "the gateway back")


def test_broker_sigkilled_mid_stream_loses_nothing_it_acknowledged(mosquitto, cloud, gateway_factory):
    """A crashed mosquitto comes back with its last autosave (every second here), so the
    messages it had sent the gateway since then are in the gateway's hands only: it must
    store them, not wait for a redelivery that will never come."""
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    pubs = Publishers(mosquitto.port, n=10, rate_per_node=100).start(seconds=9)
    for _ in range(3):
        time.sleep(2.0)
        mosquitto.kill()
        time.sleep(0.5)
        mosquitto.start()
    sent = pubs.join()
    resent = assert_exactly_once(cloud, sent, pubs.attempted)
    print(f"broker SIGKILL x3: {len(sent)} acknowledged records all stored; cloud absorbed {resent} duplicates")


def test_two_gateway_processes_split_one_site(mosquitto, cloud, gateway_factory):
    """$share/<group>/...: each message goes to one of the two gateways, none to both."""
    a = gateway_factory(mosquitto.url, cloud.url, "--gateway-id", "gw-a", "--share-group", "tf", state="gw-a").start()
    b = gateway_factory(mosquitto.url, cloud.url, "--gateway-id", "gw-b", "--share-group", "tf", state="gw-b").start()
    pubs = Publishers(mosquitto.port, n=6, rate_per_node=50).start(seconds=3)
    sent = pubs.join()
    assert_exactly_once(cloud, sent)
    got = [g.metric("tinyfleet_gateway_messages_in_total", kind="telemetry") for g in (a, b)]
    print(f"two gateways: {len(sent)} records stored once; messages per gateway {got}")
    assert all(n > 0 for n in got)
    assert sum(got) == pubs.messages            # each MQTT message reached exactly one gateway
    assert gw_dups(a) + gw_dups(b) == 0


def gw_dups(g):
    return g.metric("tinyfleet_gateway_duplicates_total")
