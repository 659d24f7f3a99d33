"""The gateway's own MQTT framing (gateway/mqtt_client.py) against hand-built packets:
every split point of a stream, QoS 0 and 1, DUP, RETAIN, 1- and 2-byte lengths, a non-PUBLISH
packet in between (handled by paho), malformed packets, and the batched PUBACKs."""
import paho.mqtt.client as mqtt
import pytest

from gateway.mqtt_client import FastClient


def publish(topic: bytes, payload: bytes, qos: int = 1, mid: int = 0, dup: bool = False, retain: bool = False) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    length, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (128 if n else 0)])
        if not n:
            return bytes([0x30 | qos << 1 | (8 if dup else 0) | retain]) + length + body


class _NoSocket:
    def close(self) -> None:
        pass


def client() -> FastClient:
    c = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", clean_session=False, manual_ack=True)
    c._sock = _NoSocket()      # "connected": framing never touches the socket itself
    return c


def test_every_split_point_yields_the_same_messages():
    stream = (publish(b"a/b", b"{}", qos=1, mid=5, dup=True) + b"\xd0\x00"          # PINGRESP: paho's
              + publish(b"t/x", b"x" * 300, qos=1, mid=65535, retain=True) + publish(b"q0", b"hi", qos=0))
    expected = [(b"a/b", b"{}", 5, 1, True, False), (b"t/x", b"x" * 300, 65535, 1, False, True),
                (b"q0", b"hi", 0, 0, False, False)]
    for cut in range(len(stream) + 1):
        c = client()
        for part in (stream[:cut], stream[cut:]):
            assert c._split(c._rbuf + part) == mqtt.MQTT_ERR_SUCCESS
        assert c.inbox == expected, cut
        assert c._rbuf == b""


@pytest.mark.parametrize("packet", [b"\x32\x01\x00",                  # shorter than a topic length
                                    b"\x32\x04\x00\x05ab",            # topic longer than the packet
                                    b"\x30\xff\xff\xff\xff\x7f"])     # remaining length over 4 bytes
def test_malformed_packets_are_protocol_errors(packet):
    assert client()._split(packet) == mqtt.MQTT_ERR_PROTOCOL


def test_acks_of_a_batch_are_one_write():
    c = client()
    c._sock = None             # nothing to write to: the packet stays queued where we can see it
    c.ack_many([5, 256])
    assert c._out_packet[-1]["packet"] == b"\x40\x02\x00\x05\x40\x02\x01\x00"
