"""`umqtt.simple.MQTTClient` with the same methods and blocking semantics, backed
by paho-mqtt driven by hand (no network thread), so many simulated nodes can run
in one process. Socket errors surface as OSError, as on the device."""
import collections
import select
import time

import paho.mqtt.client as mqtt

from .. import faults

TIMEOUT_S = 5.0

# The radio link's faults for every simulated node (node_firmware/sim/faults.py).
FAULTS = faults.NONE
# Payload bytes the broker delivered, by (client id, topic kind), before any fault.
RX_BYTES = collections.Counter()


class MQTTException(Exception):
    pass


class _Sock:
    """`client.sock.close()` drops the TCP connection without a DISCONNECT (so the
    broker publishes the will), like a node that loses power."""

    def __init__(self, owner):
        self.owner = owner

    def close(self):
        c = self.owner._c
        if c is not None and c.socket() is not None:
            c.socket().close()
        self.owner._dead = True

    def setblocking(self, flag):
        pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None, ssl_params={}):
        self.client_id = client_id.decode() if isinstance(client_id, bytes) else client_id
        self.server = server
        self.port = port or 1883
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.cb = None
        self.lw = None
        self.sock = _Sock(self)
        self._c = None
        self._dead = False
        self._queue = collections.deque()
        self._poller = None

    def fileno(self):
        """The socket's descriptor (-1 when there is none), so a simulator can wait
        on many clients at once. Not part of umqtt.simple."""
        s = self._c.socket() if self._c is not None and not self._dead else None
        return s.fileno() if s is not None else -1

    def pending(self):
        """Whether a message read off the socket is due for the callback."""
        return bool(self._ready())

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (topic, msg, retain, qos)

    def _wait(self, done, what, timeout=TIMEOUT_S):
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise OSError(110, "ETIMEDOUT waiting for " + what)
            self._loop(0.02)

    def _loop(self, timeout=0.0):
        """paho's own loop() uses select(), which fails past fd 1023 (about 340 nodes,
        as it also opens a socket pair per client); poll() has no such limit."""
        c = self._c
        if c is None or self._dead:
            raise OSError(128, "ENOTCONN")
        rc = mqtt.MQTT_ERR_SUCCESS
        if self._poller.poll(int(timeout * 1000)):
            rc = c.loop_read()
        if rc == mqtt.MQTT_ERR_SUCCESS and c.want_write():
            rc = c.loop_write()
        if rc == mqtt.MQTT_ERR_SUCCESS:
            rc = c.loop_misc()
        if rc != mqtt.MQTT_ERR_SUCCESS or self._dead or c.socket() is None:
            self._dead = True
            raise OSError(104, "ECONNRESET (paho rc %s)" % rc)

    def connect(self, clean_session=True, timeout=None):
        """Blocking connect; returns the CONNACK session-present flag."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=clean_session, protocol=mqtt.MQTTv311)
        if self.user is not None:
            c.username_pw_set(self.user, self.pswd)
        if self.lw is not None:
            topic, msg, retain, qos = self.lw
            c.will_set(topic, msg, qos, retain)
        ack = {}

        def on_connect(client, userdata, flags, reason, props):
            ack["rc"] = reason
            ack["present"] = flags.session_present

        def on_disconnect(client, userdata, flags, reason, props):
            self._dead = True

        def on_message(client, userdata, msg):
            kind = msg.topic.split("/", 3)[-1]
            RX_BYTES[(self.client_id, kind)] += len(msg.payload)
            payload = FAULTS.inbound(kind, bytes(msg.payload))
            if payload is not None:
                self._queue.append((time.monotonic() + FAULTS.arrival_delay(), msg.topic.encode(), payload))

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_message = on_message
        self._c = c
        self._dead = False
        try:
            c.connect(self.server, self.port, keepalive=self.keepalive or 60)
        except OSError:
            self._c = None
            raise
        except Exception as e:  # paho raises ValueError etc. for bad arguments
            self._c = None
            raise OSError(str(e))
        self._poller = select.poll()
        self._poller.register(c.socket(), select.POLLIN)
        self._wait(lambda: "rc" in ack, "CONNACK", timeout or TIMEOUT_S)
        if ack["rc"].is_failure:
            self._dead = True
            raise MQTTException(int(ack["rc"].value))
        return ack["present"]

    def disconnect(self):
        if self._c is not None and not self._dead:
            self._c.disconnect()  # written at once: no network thread is running
        self._dead = True

    def ping(self):
        self._loop(0.0)  # paho sends PINGREQ itself when the keepalive is due

    def publish(self, topic, msg, retain=False, qos=0):
        if self._c is None or self._dead:
            raise OSError(128, "ENOTCONN")
        if isinstance(topic, bytes):
            topic = topic.decode()
        if FAULTS.chance(FAULTS.drop):   # lost on the link: QoS 0 is gone, QoS 1 never sees its PUBACK
            if qos == 0:
                return
            self._dead = True
            raise OSError(110, "ETIMEDOUT waiting for PUBACK (message lost on the link)")
        info = self._c.publish(topic, bytes(msg), qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._dead = True
            raise OSError(104, "publish failed (paho rc %s)" % info.rc)
        if qos == 0:
            self._loop(0.0)
        else:
            self._wait(info.is_published, "PUBACK")

    def subscribe(self, topic, qos=0):
        if isinstance(topic, bytes):
            topic = topic.decode()
        if self._c is None or self._dead:
            raise OSError(128, "ENOTCONN")
        acked = []
        self._c.on_subscribe = lambda client, userdata, mid, codes, props: acked.append(mid)
        rc, mid = self._c.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(104, "subscribe failed (paho rc %s)" % rc)
        self._wait(lambda: mid in acked, "SUBACK")

    def _ready(self):
        return self._queue and self._queue[0][0] <= time.monotonic()

    def _deliver(self):
        _, topic, msg = self._queue.popleft()
        if self.cb is not None:
            self.cb(topic, msg)

    def check_msg(self):
        """Handle at most one waiting message; never blocks."""
        if not self._ready():
            self._loop(0.0)
        if self._ready():
            self._deliver()
        return None

    def wait_msg(self):
        while not self._ready():
            self._loop(0.02)
        self._deliver()
        return None
