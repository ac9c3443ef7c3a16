"""Modbus/TCP: the stream parser and the capture fast path."""
