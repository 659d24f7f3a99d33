"""A small MQTT 3.1.1 broker on asyncio: the fallback `tinyfleet demo` uses when
mosquitto is not installed. It covers what TinyFleet's clients use and no more:
CONNECT (any username/password is accepted), clean and persistent sessions (kept in
memory only), QoS 0/1 publish and subscribe with PUBACK (QoS 2 publishes are taken
and delivered at QoS 1 at most), retained messages, the last will on an abrupt close
or a keepalive timeout, `+`/`#` wildcards and `$share/<group>/<filter>` shared
subscriptions (round-robin, connected members first).

Not a production broker: no TLS, no auth or ACL, no persistence across restarts, no
queue limits, one Python thread. Run it as `python -m tinyfleet.embedded_broker --port N`."""
import argparse
import asyncio
import collections
import struct

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
MAX_PACKET = 1 << 20  # the same limit as the generated mosquitto config
MAX_INFLIGHT = 1000   # unacked QoS 1 messages per client; more wait in its queue


class ProtocolError(Exception):
    pass


def packet(kind: int, flags: int, body: bytes) -> bytes:
    n, head = len(body), bytearray([kind << 4 | flags])
    while True:
        n, b = divmod(n, 128)
        head.append(b | (128 if n else 0))
        if not n:
            return bytes(head) + body


def utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


class Reader:
    """Length-prefixed fields of one packet body."""

    def __init__(self, body: bytes):
        self.b, self.i = body, 0

    def u8(self) -> int:
        self.i += 1
        return self.b[self.i - 1]

    def u16(self) -> int:
        self.i += 2
        return struct.unpack_from("!H", self.b, self.i - 2)[0]

    def blob(self) -> bytes:
        n = self.u16()
        self.i += n
        if self.i > len(self.b):
            raise ProtocolError("field runs past the packet")
        return self.b[self.i - n:self.i]

    def text(self) -> str:
        return self.blob().decode()

    def rest(self) -> bytes:
        return self.b[self.i:]


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    first = (await reader.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        n |= (b & 127) << shift
        shift += 7
        if b < 128:
            break
        if shift > 21:
            raise ProtocolError("bad remaining length")
    if n > MAX_PACKET:
        raise ProtocolError(f"packet of {n} B over the {MAX_PACKET} B limit")
    return first >> 4, first & 15, await reader.readexactly(n) if n else b""


def valid_filter(f: str) -> bool:
    parts = f.split("/")
    return bool(f) and all(("+" not in p and "#" not in p) or p == "+" or (p == "#" and i == len(parts) - 1)
                           for i, p in enumerate(parts))


def matches(flt: str, topic: str) -> bool:
    if flt == topic:
        return True
    f, t = flt.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False  # wildcards at the start never match $SYS-like topics
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def split_share(flt: str) -> tuple[str | None, str]:
    """'$share/g/a/b' -> ('g', 'a/b'); a plain filter -> (None, filter)."""
    if flt.startswith("$share/"):
        parts = flt.split("/", 2)
        if len(parts) == 3 and parts[1] and not {"+", "#"} & set(parts[1]) and valid_filter(parts[2]):
            return parts[1], parts[2]
        raise ProtocolError(f"bad shared subscription {flt!r}")
    if not valid_filter(flt):
        raise ProtocolError(f"bad filter {flt!r}")
    return None, flt


class Session:
    def __init__(self, cid: str, clean: bool):
        self.cid, self.clean = cid, clean
        self.subs: dict[str, int] = {}                         # filter as subscribed -> granted QoS
        self.writer: asyncio.StreamWriter | None = None        # None while offline
        self.inflight: dict[int, tuple[str, bytes]] = {}       # QoS 1 sent, not yet PUBACKed
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()  # QoS 1 waiting to be sent
        self.qos2: set[int] = set()                            # inbound QoS 2 ids awaiting PUBREL
        self.mid = 1

    @property
    def online(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    def send(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        if qos and (self.queue or len(self.inflight) >= MAX_INFLIGHT or not self.online):
            if self.online or not self.clean:  # QoS 1 waits for a free window or the reconnect
                self.queue.append((topic, payload))
        elif self.online:
            self.write(topic, payload, qos, retain)

    def write(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        assert self.writer is not None
        body = utf8(topic)
        if qos:
            while self.mid in self.inflight:
                self.mid = self.mid % 65535 + 1
            self.inflight[self.mid] = (topic, payload)
            body += struct.pack("!H", self.mid)
            self.mid = self.mid % 65535 + 1
        self.writer.write(packet(PUBLISH, qos << 1 | retain, body + payload))

    def pump(self) -> None:
        while self.queue and self.online and len(self.inflight) < MAX_INFLIGHT:
            self.write(*self.queue.popleft(), 1)

    def resume(self) -> None:
        """After a reconnect: unacked messages again (DUP), then what queued while offline."""
        assert self.writer is not None
        for mid, (topic, payload) in self.inflight.items():
            self.writer.write(packet(PUBLISH, 8 | 2, utf8(topic) + struct.pack("!H", mid) + payload))
        self.pump()


class Broker:
    def __init__(self):
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, tuple[bytes, int]] = {}
        self.plain: dict[str, dict[str, int]] = {}                    # filter -> {client id: qos}
        self.shared: dict[tuple[str, str], dict[str, int]] = {}       # (group, filter) -> {client id: qos}
        self.turn: collections.Counter = collections.Counter()        # round-robin position per group
        self.routes: dict[str, tuple[dict[str, int], list]] = {}      # topic -> matches, cleared on (un)subscribe
        self.anon = 0

    # -- routing ---------------------------------------------------------------
    def route(self, topic: str) -> tuple[dict[str, int], list]:
        r = self.routes.get(topic)
        if r is None:
            plain: dict[str, int] = {}
            for flt, members in self.plain.items():
                if matches(flt, topic):
                    for cid, q in members.items():
                        plain[cid] = max(q, plain.get(cid, 0))
            shared = [key for key in self.shared if matches(key[1], topic)]
            if len(self.routes) > 10000:
                self.routes.clear()
            r = self.routes[topic] = (plain, shared)
        return r

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        plain, shared = self.route(topic)
        for cid, q in plain.items():
            self.sessions[cid].send(topic, payload, min(qos, q))
        for key in shared:
            members = self.shared[key]
            pick = [c for c in members if self.sessions[c].online] or list(members)
            self.turn[key] += 1
            cid = pick[self.turn[key] % len(pick)]
            self.sessions[cid].send(topic, payload, min(qos, members[cid]))

    def subscribe(self, s: Session, flt: str, qos: int) -> None:
        group, f = split_share(flt)
        (self.shared.setdefault((group, f), {}) if group else self.plain.setdefault(f, {}))[s.cid] = qos
        s.subs[flt] = qos
        self.routes.clear()
        if group is None:  # retained messages go to new plain subscriptions only (as mosquitto does)
            for topic, (payload, rq) in list(self.retained.items()):
                if matches(f, topic):
                    s.send(topic, payload, min(qos, rq), retain=True)

    def unsubscribe(self, s: Session, flt: str) -> None:
        if s.subs.pop(flt, None) is None:
            return
        group, f = split_share(flt)
        table: dict = self.shared if group else self.plain
        key = (group, f) if group else f
        table[key].pop(s.cid, None)
        if not table[key]:
            del table[key]
        self.routes.clear()

    def drop(self, s: Session) -> None:
        for flt in list(s.subs):
            self.unsubscribe(s, flt)
        if self.sessions.get(s.cid) is s:
            del self.sessions[s.cid]

    # -- one connection --------------------------------------------------------
    def connect(self, body: bytes, writer: asyncio.StreamWriter) -> tuple[Session | None, tuple | None, int]:
        r = Reader(body)
        name, level, flags, keepalive = r.text(), r.u8(), r.u8(), r.u16()
        if (name, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            writer.write(packet(CONNACK, 0, b"\x00\x01"))  # unacceptable protocol version
            return None, None, 0
        cid, clean = r.text(), bool(flags & 2)
        will = (r.text(), r.blob(), (flags >> 3) & 3, bool(flags & 32)) if flags & 4 else None
        if not cid:
            if not clean:
                writer.write(packet(CONNACK, 0, b"\x00\x02"))  # identifier rejected
                return None, None, 0
            self.anon += 1
            cid = f"anon-{self.anon}"
        # username and password (flags 0x80, 0x40) are accepted whatever they are
        old = self.sessions.get(cid)
        if old is not None and old.writer is not None:
            old.writer.close()  # session takeover: the old connection goes
        if old is not None and (clean or old.clean):
            self.drop(old)
            old = None
        s = old or Session(cid, clean)
        s.clean, s.writer = clean, writer
        self.sessions[cid] = s
        writer.write(packet(CONNACK, 0, bytes([old is not None, 0])))
        s.resume()
        return s, will, keepalive

    def handle(self, s: Session, w: asyncio.StreamWriter, kind: int, flags: int, body: bytes) -> None:
        r = Reader(body)
        if kind == PUBLISH:
            qos, topic = (flags >> 1) & 3, r.text()
            if qos == 3 or not topic or "+" in topic or "#" in topic:
                raise ProtocolError(f"bad PUBLISH to {topic!r}")
            mid = r.u16() if qos else 0
            if qos == 1:
                w.write(packet(PUBACK, 0, struct.pack("!H", mid)))
            elif qos == 2:
                w.write(packet(PUBREC, 0, struct.pack("!H", mid)))
                if mid in s.qos2:
                    return  # a resend before PUBREL: already delivered
                s.qos2.add(mid)
            self.publish(topic, r.rest(), min(qos, 1), bool(flags & 1))
        elif kind == PUBACK:
            s.inflight.pop(r.u16(), None)
            s.pump()
        elif kind == PUBREL:
            mid = r.u16()
            s.qos2.discard(mid)
            w.write(packet(PUBCOMP, 0, struct.pack("!H", mid)))
        elif kind == SUBSCRIBE:
            mid, granted, wanted = r.u16(), bytearray(), []
            while r.i < len(body):
                flt, qos = r.text(), r.u8() & 3
                try:
                    split_share(flt)
                    granted.append(min(qos, 1))
                    wanted.append((flt, min(qos, 1)))
                except ProtocolError:
                    granted.append(0x80)
            w.write(packet(SUBACK, 0, struct.pack("!H", mid) + granted))
            for flt, qos in wanted:
                self.subscribe(s, flt, qos)
        elif kind == UNSUBSCRIBE:
            mid = r.u16()
            while r.i < len(body):
                self.unsubscribe(s, r.text())
            w.write(packet(UNSUBACK, 0, struct.pack("!H", mid)))
        elif kind == PINGREQ:
            w.write(packet(PINGRESP, 0, b""))
        elif kind not in (PUBREC, PUBCOMP):
            raise ProtocolError(f"unexpected packet type {kind}")

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s, will, polite = None, None, False
        try:
            async with asyncio.timeout(10):
                kind, _, body = await read_packet(reader)
            if kind != CONNECT:
                return
            s, will, keepalive = self.connect(body, writer)
            if s is None:
                return
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(None) as deadline:
                while True:
                    if keepalive:  # 1.5 x keepalive without a packet: the client is gone
                        deadline.reschedule(loop.time() + 1.5 * keepalive)
                    kind, flags, body = await read_packet(reader)
                    if s.writer is not writer:
                        break  # taken over by a newer connection with the same client id
                    if kind == DISCONNECT:
                        polite = True
                        break
                    self.handle(s, writer, kind, flags, body)
        except (OSError, EOFError, TimeoutError, ProtocolError, IndexError, struct.error, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            if s is not None and s.writer is writer:
                s.writer = None
                if s.clean:
                    self.drop(s)
            if will is not None and not polite:
                self.publish(*will)


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(Broker().client, host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    a = ap.parse_args()
    try:
        asyncio.run(serve(a.host, a.port))
    except KeyboardInterrupt:
        pass
