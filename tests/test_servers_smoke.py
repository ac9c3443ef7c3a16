"""The test servers themselves start and answer: a broken fixture would make every other test meaningless."""

from __future__ import annotations

import socket

from tests.support import servers


def test_mosquitto_accepts_connections(mqtt_broker: servers.Mosquitto) -> None:
    with socket.create_connection((mqtt_broker.host, mqtt_broker.port), timeout=2) as sock:
        # MQTT 3.1.1 CONNECT, client id "t", clean session, keep-alive 10 s.
        sock.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 1]) + b"t")
        assert sock.recv(4) == bytes([0x20, 2, 0, 0])  # CONNACK, accepted


def test_postgres_answers_queries(pg_server: servers.Postgres) -> None:
    import psycopg

    with psycopg.connect(pg_server.dsn) as conn:
        assert conn.execute("select 40 + 2").fetchone() == (42,)
