"""The outbox and the duplicate filters on their own (real SQLite files): chunked rows,
the full-disk policy, durability across a reopen (records, rids, the deliveries log, the
last status per topic),
and an outbox written by the older gateway."""
import sqlite3

from gateway.dedup import WINDOW, Deliveries, SeqWindow, crc
from gateway.queue import Outbox


def tel(n, size=100):
    return ("telemetry", n, b"x" * size)


def test_rows_hold_records_and_peek_respects_the_record_limit(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", 10**9)
    assert ob.put([tel(3), ("status", 1, b"{}"), tel(500)]) == (504, 0)
    assert ob.depth == 504
    assert [r.n for r in ob.peek(10)] == [3, 1]            # the 500-record row would exceed 10
    assert [r.n for r in ob.peek(1)] == [3]                # but one row always comes
    assert [r.n for r in ob.peek(2000)] == [3, 1, 500]
    ob.delete([r.id for r in ob.peek(4)])
    assert (ob.depth, ob.bytes) == (500, 100)


def test_full_outbox_drops_the_oldest_and_counts_records(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    for i in range(10):
        ob.put([tel(2)])
    assert ob.depth == 20 and ob.bytes == 1000
    assert ob.put([tel(1), tel(1), tel(1)]) == (3, 6)       # three 100-byte rows of 2 records made room
    assert ob.depth == 17 and ob.bytes == 1000
    assert ob.put([tel(1, size=250)]) == (1, 6)            # 250 bytes need three more 2-record victims
    assert ob.bytes == 950


def test_records_rids_and_deliveries_survive_a_reopen(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", 10**9)
    ob.put([tel(5) for _ in range(10)], session=1, delivered=Deliveries.pack([(7, 1234), (8, 99)]),
           statuses={b"t/s/n/status": 42})
    rows = ob.peek(100)
    ob.delete([r.id for r in rows[:4]])
    rid, epoch = ob.rid(rows[5].id), ob.epoch
    ob.close()
    again = Outbox(tmp_path / "o.sqlite", 10**9)
    assert (again.depth, again.bytes) == (30, 600)
    assert again.epoch == epoch and again.rid(again.peek(100)[1].id) == rid
    assert again.deliveries.committed(1, 7, 1234) and again.deliveries.committed(1, 8, 99)
    assert not again.deliveries.committed(2, 7, 1234)      # another broker session
    assert not again.deliveries.committed(1, 7, 1235)      # another message under the same packet id
    assert again.statuses == {b"t/s/n/status": 42}
    assert again.new_session() == again.session == 1
    again.close()
    assert Outbox(tmp_path / "o.sqlite", 10**9).session == 1


def test_a_fresh_outbox_draws_a_new_epoch(tmp_path):
    assert Outbox(tmp_path / "a.sqlite", 10**9).epoch != Outbox(tmp_path / "b.sqlite", 10**9).epoch


def test_outbox_of_the_older_gateway_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.executescript("""CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
                        body BLOB NOT NULL, size INTEGER NOT NULL, at REAL NOT NULL);
                        CREATE TABLE seen (node TEXT, seq INTEGER, at REAL, PRIMARY KEY (node, seq)) WITHOUT ROWID;""")
    db.execute("INSERT INTO outbox(kind, body, size, at) VALUES ('telemetry', '{\"seq\":1,\"node\":\"a\"}', 20, 0)")
    db.commit()
    db.close()
    ob = Outbox(tmp_path / "o.sqlite", 10**9)
    assert ob.depth == 1 and ob.peek(10)[0].n == 1         # one flat record is a one-record row


def test_old_deliveries_are_forgotten_after_keep_more():
    d = Deliveries()
    d.add(1, Deliveries.pack([(5, 42)]), upto=1)
    assert d.committed(1, 5, 42)
    d.add(1, Deliveries.pack([(6, 1)]), upto=30_000)       # 30,000 deliveries later
    assert not d.committed(1, 5, 42)


def test_seq_window_drops_repeats_and_forwards_what_it_cannot_know():
    w = SeqWindow()
    assert [w.add("a", s) for s in (5, 6, 6, 4, 5, 10**9, 10**9 - 1, 10**9)] == \
        [True, True, False, True, False, True, True, False]
    assert w.add("a", 10**9 - WINDOW - 5)                   # below the window: the cloud's key decides
    assert w.add("b", 6)                                     # per node


def test_crc_covers_topic_and_payload():
    assert crc(b"t/a", b"{}") != crc(b"t/b", b"{}") and crc(b"t", b"1") != crc(b"t", b"2")
