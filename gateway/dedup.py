"""The gateway's two duplicate filters (the cloud's (node, seq) key is the last line of defence
for telemetry; these keep duplicates off the uplink and make the other kinds exactly-once).

Redeliveries: the gateway acks a message only after it is committed to the outbox, so a crash
between the commit and the PUBACK makes the broker resend it, with the DUP flag and its
original packet id (MQTT 3.1.1, 4.4). The outbox therefore commits, with every batch, the
(packet id, crc32) of each QoS 1 message in it, tagged with the broker session it came in.
A DUP message whose id and crc match one of those in the same session was already stored.
Mosquitto hands out packet ids in sequence (65,535 before one repeats); only the last KEEP
committed deliveries are remembered, and at most two batches of mqtt_in.MAX_PENDING (plus
what the sockets hold) can be delivered but uncommitted, so an entry cannot be mistaken for
a later message that reuses its id. A new session (CONNACK without session-present) bumps the session number:
the broker forgot our unacked messages and will not resend them.

Node retransmissions: a node whose PUBACK got lost sends the telemetry again as a new
message. A sliding window per node (like IPsec's anti-replay window) drops a (node, seq)
seen among that node's last WINDOW seqs; older ones pass and the cloud decides."""
import struct
import zlib

KEEP = 20_000          # deliveries remembered (mosquitto reuses a packet id after 65,535)
WINDOW = 1024          # seqs per node the telemetry filter remembers

_ENTRY = struct.Struct(">HI")   # packet id, crc32 of topic + payload
ENTRY_SIZE = _ENTRY.size


def crc(topic: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(topic))


class Deliveries:
    """In-memory mirror of the outbox's deliveries log: packet id -> (session, crc, count),
    where count numbers the deliveries the gateway has committed so far."""

    def __init__(self) -> None:
        self.by_mid: dict[int, tuple[int, int, int]] = {}
        self.count = 0

    def committed(self, session: int, mid: int, digest: int) -> bool:
        e = self.by_mid.get(mid)
        return e is not None and e[0] == session and e[1] == digest and e[2] > self.count - KEEP

    def add(self, session: int, packed: bytes, upto: int) -> None:
        """Entries of one committed batch; `upto` is the count after it."""
        k = upto - len(packed) // ENTRY_SIZE
        for mid, digest in _ENTRY.iter_unpack(packed):
            k += 1
            self.by_mid[mid] = (session, digest, k)
        self.count = max(self.count, upto)

    @staticmethod
    def pack(entries: list[tuple[int, int]]) -> bytes:
        return b"".join([_ENTRY.pack(mid, digest) for mid, digest in entries])


class SeqWindow:
    """Per node: the highest seq seen and a bit mask of the WINDOW seqs below it."""

    FULL = (1 << WINDOW) - 1

    def __init__(self) -> None:
        self.nodes: dict[str, list[int]] = {}    # node -> [highest seq, mask]; bit k = highest - k seen

    def add(self, node: str, seq: int) -> bool:
        """True if (node, seq) is new (and remembers it), False for a duplicate."""
        st = self.nodes.get(node)
        if st is None:
            self.nodes[node] = [seq, 1]
            return True
        hi, mask = st
        if seq > hi:
            jump = seq - hi
            st[0], st[1] = seq, ((mask << jump) | 1) & self.FULL if jump < WINDOW else 1
            return True
        bit = hi - seq
        if bit >= WINDOW:
            return True              # older than the window: forwarded, the cloud's key decides
        if mask >> bit & 1:
            return False
        st[1] = mask | (1 << bit)
        return True

    def clear(self) -> None:
        self.nodes.clear()
