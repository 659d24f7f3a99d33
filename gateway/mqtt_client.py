"""paho keeps the gateway's MQTT session (connect, subscribe, keepalive, reconnect); this
subclass takes over the two per-message steps, which paho makes expensive:

- reading: one recv() of up to 256 KiB is split into packets here; a PUBLISH becomes a
  plain tuple (topic, payload, mid, qos, dup, retain) appended to `inbox`. paho would build an
  MQTTMessage with its own threading.Condition and match it against the subscriptions,
  which cost more than the gateway's whole validation. Other packets (CONNACK, SUBACK,
  PINGRESP, ...) are handed to paho's own handlers unchanged.
- acking: the PUBACKs of a committed batch go out as one write, not one send() each.

MQTT 3.1.1 only (no PUBLISH properties), which is what the gateway connects with."""
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_PUBLISH = 0x30
_PUBACK = 0x40
_SUCCESS, _CONN_LOST, _PROTOCOL = MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_CONN_LOST, MQTTErrorCode.MQTT_ERR_PROTOCOL


class FastClient(mqtt.Client):
    RECV = 262144

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inbox: list[tuple[bytes, bytes, int, int, bool, bool]] = []
        self._rbuf = b""

    def reconnect(self):
        self._rbuf = b""        # a partial packet of the old socket is worthless on the new one
        return super().reconnect()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = self._sock_recv(self.RECV)
        except BlockingIOError:
            return _SUCCESS
        except (OSError, ConnectionError):
            return self._loop_rc_handle(_CONN_LOST)
        if not data:
            return self._loop_rc_handle(_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        buf = self._rbuf + data if self._rbuf else data
        rc = self._split(buf)
        return self._loop_rc_handle(rc) if rc else _SUCCESS

    def _split(self, buf: bytes) -> MQTTErrorCode:
        """Handles every complete packet in buf; keeps the incomplete tail for the next read."""
        inbox, end, pos = self.inbox, len(buf), 0
        while end - pos >= 2:
            cmd = buf[pos]
            i, length, shift = pos + 1, 0, 0
            while True:                          # remaining length: 1-4 bytes, 7 bits each
                if i >= end:
                    self._rbuf = buf[pos:]
                    return _SUCCESS
                b = buf[i]
                length |= (b & 127) << shift
                i += 1
                if not b & 128:
                    break
                shift += 7
                if shift > 21:
                    return _PROTOCOL
            if i + length > end:
                break
            if cmd & 0xF0 == _PUBLISH:
                qos = (cmd >> 1) & 3
                if length < 2:
                    return _PROTOCOL
                tlen = (buf[i] << 8) | buf[i + 1]
                t_end = i + 2 + tlen
                if t_end + (2 if qos else 0) > i + length:
                    return _PROTOCOL
                if qos:
                    inbox.append((buf[i + 2:t_end], buf[t_end + 2:i + length], (buf[t_end] << 8) | buf[t_end + 1],
                                  qos, bool(cmd & 8), bool(cmd & 1)))
                else:
                    inbox.append((buf[i + 2:t_end], buf[t_end:i + length], 0, 0, False, bool(cmd & 1)))
            else:
                rc = self._paho_packet(cmd, buf[i:i + length])
                if rc or self._sock is None:
                    return rc
            pos = i + length
        self._rbuf = buf[pos:]
        return _SUCCESS

    def _paho_packet(self, cmd: int, body: bytes) -> MQTTErrorCode:
        self._in_packet = {"command": cmd, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": len(body), "packet": bytearray(body), "to_process": 0, "pos": 0}
        try:
            return self._packet_handle()
        except Exception:  # noqa: BLE001 - paho raises MalformedPacket and friends
            return _PROTOCOL
        finally:
            self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                               "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}

    def ack_many(self, mids: list[int]) -> MQTTErrorCode:
        """PUBACK for every mid, queued as one write."""
        if not mids:
            return _SUCCESS
        return self._packet_queue(_PUBACK, b"".join([b"\x40\x02" + m.to_bytes(2, "big") for m in mids]), 0, 0)
