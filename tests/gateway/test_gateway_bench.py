"""`tinyfleet bench ingest` end to end on a small load, into the real cloud process and into
the stand-in: every message reaches the store, and the numbers it reports are consistent."""
import pytest

from gateway.bench import run_bench


@pytest.mark.parametrize("store", ["real", "stand-in"])
def test_bench_ingest_small_run_is_complete_and_consistent(store):
    r = run_bench(rate=200, seconds=2.0, publishers=4, max_messages=2000, store=store, out=None)
    assert r["gateway"]["complete"] and r["gateway"]["stored"] == 2000
    assert r["raw_broker"]["messages"] == 2000 and r["raw_broker"]["msg_per_s"] > 0
    assert r["paced"]["stored"] == r["paced"]["sent"] > 300
    assert 0 < r["paced"]["p50_ms"] <= r["paced"]["p99_ms"] <= r["paced"]["max_ms"]
    assert r["ratio_to_raw"] == round(r["gateway"]["msg_per_s"] / r["raw_broker"]["msg_per_s"], 3)
    assert all(v > 0 for v in r["gateway"]["cpu_us_per_msg"].values()) and 0 < r["cpu_ratio"] < 2
    assert ("cloud serve" in r["store"]) == (store == "real") and r["gateway_processes"] == 1
