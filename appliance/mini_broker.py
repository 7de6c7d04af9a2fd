"""A small in-process MQTT 3.1.1 broker for `facewatch demo`, so the demo needs no broker installed.

It supports what the demo uses: CONNECT with a will, PUBLISH at QoS 0/1 (delivered at QoS 0),
retained messages, SUBSCRIBE/UNSUBSCRIBE with + and # wildcards, PINGREQ and DISCONNECT. It listens on
127.0.0.1 only. It is not a production broker: point `mqtt.host` at mosquitto for that.
"""
import logging
import socket
import struct
import threading

log = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 10, 11, 12, 13, 14


def topic_matches(pattern, topic):
    pattern_parts, topic_parts = pattern.split("/"), topic.split("/")
    for index, part in enumerate(pattern_parts):
        if part == "#":
            return True
        if index >= len(topic_parts) or (part != "+" and part != topic_parts[index]):
            return False
    return len(pattern_parts) == len(topic_parts)


def encode_length(length):
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def utf8(text):
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def publish_packet(topic, payload, retain=False):
    body = utf8(topic) + payload
    return bytes([PUBLISH << 4 | int(retain)]) + encode_length(len(body)) + body


class _Session:
    def __init__(self, broker, sock):
        self.broker = broker
        self.sock = sock
        self.subscriptions = set()
        self.will = None
        self.lock = threading.Lock()

    def send(self, packet):
        with self.lock:
            try:
                self.sock.sendall(packet)
            except OSError:
                pass

    def serve(self):
        clean = False
        try:
            while True:
                header = self._read(1)
                if header is None:
                    break
                kind, flags = header[0] >> 4, header[0] & 0x0F
                body = self._read(self._read_length())
                if body is None:
                    break
                if kind == DISCONNECT:
                    clean = True
                    break
                self._handle(kind, flags, body)
        except (OSError, ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
            log.debug("demo broker: client dropped: %s", exc)
        finally:
            self.broker.remove(self)
            if self.will and not clean:
                self.broker.route(*self.will)
            self.sock.close()

    def _handle(self, kind, flags, body):
        if kind == CONNECT:
            self._connect(body)
        elif kind == PUBLISH:
            qos, retain = (flags >> 1) & 3, bool(flags & 1)
            (length,) = struct.unpack("!H", body[:2])
            topic = body[2:2 + length].decode("utf-8")
            offset = 2 + length
            if qos:
                self.send(bytes([PUBACK << 4, 2]) + body[offset:offset + 2])
                offset += 2
            self.broker.route(topic, body[offset:], retain)
        elif kind == SUBSCRIBE:
            packet_id, offset, granted, patterns = body[:2], 2, bytearray(), []
            while offset < len(body):
                (length,) = struct.unpack("!H", body[offset:offset + 2])
                patterns.append(body[offset + 2:offset + 2 + length].decode("utf-8"))
                offset += 3 + length
                granted.append(0)
            self.subscriptions.update(patterns)
            self.send(bytes([SUBACK << 4]) + encode_length(2 + len(granted)) + packet_id + bytes(granted))
            for pattern in patterns:
                for topic, payload in self.broker.retained_matching(pattern):
                    self.send(publish_packet(topic, payload, retain=True))
        elif kind == UNSUBSCRIBE:
            self.send(bytes([UNSUBACK << 4, 2]) + body[:2])
        elif kind == PINGREQ:
            self.send(bytes([PINGRESP << 4, 0]))

    def _connect(self, body):
        (name_length,) = struct.unpack("!H", body[:2])
        offset = 2 + name_length + 1
        connect_flags = body[offset]
        offset += 3
        (client_id_length,) = struct.unpack("!H", body[offset:offset + 2])
        offset += 2 + client_id_length
        if connect_flags & 0x04:
            (length,) = struct.unpack("!H", body[offset:offset + 2])
            topic = body[offset + 2:offset + 2 + length].decode("utf-8")
            offset += 2 + length
            (length,) = struct.unpack("!H", body[offset:offset + 2])
            self.will = (topic, body[offset + 2:offset + 2 + length], bool(connect_flags & 0x20))
        self.send(bytes([CONNACK << 4, 2, 0, 0]))

    def _read_length(self):
        length, multiplier = 0, 1
        while True:
            byte = self._read(1)
            if byte is None:
                raise ValueError("connection closed")
            length += (byte[0] & 0x7F) * multiplier
            if not byte[0] & 0x80:
                return length
            multiplier *= 128

    def _read(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class MiniBroker:
    def __init__(self, host="127.0.0.1", port=0):
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(16)
        self.host, self.port = self._server.getsockname()
        self._sessions = set()
        self._retained = {}
        self._lock = threading.Lock()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._accept_loop, name="demo-broker", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def route(self, topic, payload, retain):
        with self._lock:
            if retain:
                if payload:
                    self._retained[topic] = payload
                else:
                    self._retained.pop(topic, None)
            targets = [s for s in self._sessions if any(topic_matches(p, topic) for p in s.subscriptions)]
        packet = publish_packet(topic, payload)
        for session in targets:
            session.send(packet)

    def retained_matching(self, pattern):
        with self._lock:
            return [(t, p) for t, p in self._retained.items() if topic_matches(pattern, t)]

    def remove(self, session):
        with self._lock:
            self._sessions.discard(session)

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            session = _Session(self, sock)
            with self._lock:
                self._sessions.add(session)
            threading.Thread(target=session.serve, name="demo-broker-client", daemon=True).start()
