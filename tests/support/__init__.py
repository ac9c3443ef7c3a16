"""Helpers that start real servers for the tests (Mosquitto, PostgreSQL) on free loopback ports."""
