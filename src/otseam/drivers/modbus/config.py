"""The Modbus part of a device's contract entry: endpoint, options, and their validation.

Errors are :class:`ModbusConfigError` with a message that names the device and says what to write
instead; the supervisor shows it to the user, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from otseam.contract.models import Device
from otseam.core.plugins import unknown_options
from otseam.protocols.modbus.tables import MAX_READ_BITS, MAX_READ_REGISTERS

Framing = Literal["tcp", "rtu", "rtu+tcp"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class ModbusConfigError(ValueError):
    """The contract asks for something the Modbus driver cannot do."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a device is reached. Devices with equal endpoints share one connection."""

    framing: Framing
    host: str = ""
    port: int = 0
    serial_port: str = ""
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> str:
        if self.framing == "rtu":
            return f"rtu://{self.serial_port}"
        return f"{self.framing}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Options:
    """Driver settings from ``device.options``; every key is checked, a misspelling is an error."""

    max_gap: int = 16
    max_registers_per_read: int = MAX_READ_REGISTERS
    max_bits_per_read: int = MAX_READ_BITS
    #: Requests that may be outstanding on one TCP connection. 1 is safe for every device; gateways
    #: and servers that queue requests by transaction id allow more.
    max_in_flight: int = 1
    #: Upper bound of the reconnect and dead-unit backoff, seconds.
    max_backoff: float = 30.0
    byte_order: ByteOrder = "ABCD"


_OPTION_KEYS = {"max_gap", "max_registers_per_read", "max_bits_per_read", "max_in_flight", "max_backoff", "byte_order"}


def parse_endpoint(text: str, device_id: str = "") -> Endpoint:
    """``tcp://host:port``, ``rtu+tcp://host:port``, ``rtu:///dev/ttyUSB0?baudrate=19200&parity=E&stopbits=1``."""
    where = f"device {device_id}: " if device_id else ""
    hint = "write tcp://HOST:PORT, rtu+tcp://HOST:PORT or rtu:///dev/ttyXXX?baudrate=19200&parity=N&stopbits=1"
    parts = urlsplit(text.strip())
    if parts.scheme in ("tcp", "rtu+tcp"):
        if parts.path not in ("", "/") or parts.query:
            raise ModbusConfigError(f"{where}endpoint {text!r} has a path or query a TCP endpoint does not use; {hint}")
        try:
            port = parts.port if parts.port is not None else 502
        except ValueError:
            raise ModbusConfigError(f"{where}endpoint {text!r} has an invalid port; {hint}") from None
        if not parts.hostname or port == 0:
            raise ModbusConfigError(f"{where}endpoint {text!r} has no host or port; {hint}")
        return Endpoint(parts.scheme, host=parts.hostname, port=port)  # type: ignore[arg-type]
    if parts.scheme == "rtu":
        if parts.netloc or not parts.path:
            raise ModbusConfigError(f"{where}endpoint {text!r} must name a serial device path; {hint}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - {"baudrate", "parity", "stopbits", "bytesize"}
        if unknown:
            raise ModbusConfigError(
                f"{where}endpoint {text!r}: unknown setting(s) {', '.join(sorted(unknown))}; {hint}"
            )
        try:
            baudrate = int(query.get("baudrate", "19200"))
            stopbits = int(query.get("stopbits", "1"))
            bytesize = int(query.get("bytesize", "8"))
        except ValueError:
            raise ModbusConfigError(f"{where}endpoint {text!r}: baudrate, stopbits and bytesize are numbers") from None
        parity = query.get("parity", "N").upper()
        if parity not in ("N", "E", "O") or stopbits not in (1, 2) or bytesize not in (7, 8) or baudrate <= 0:
            raise ModbusConfigError(
                f"{where}endpoint {text!r}: parity is N, E or O, stopbits 1 or 2, bytesize 7 or 8, baudrate positive"
            )
        return Endpoint(
            "rtu",
            serial_port=parts.path,
            baudrate=baudrate,
            parity=parity,  # type: ignore[arg-type]
            stopbits=stopbits,
            bytesize=bytesize,
        )
    raise ModbusConfigError(f"{where}endpoint {text!r} is not a Modbus endpoint; {hint}")


def _int_option(raw: dict[str, Any], key: str, default: int, low: int, high: int, device_id: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModbusConfigError(
            f"device {device_id}: options.{key} must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def parse_options(device: Device) -> Options:
    raw = device.options
    problem = unknown_options(device.id, "Modbus", raw, _OPTION_KEYS)
    if problem:
        raise ModbusConfigError(problem)
    order = raw.get("byte_order", "ABCD")
    if order not in ("ABCD", "CDAB", "BADC", "DCBA"):
        raise ModbusConfigError(
            f"device {device.id}: options.byte_order must be ABCD, CDAB, BADC or DCBA, got {order!r}"
        )
    backoff = raw.get("max_backoff", 30.0)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0.1 <= backoff <= 3600:
        raise ModbusConfigError(f"device {device.id}: options.max_backoff is seconds from 0.1 to 3600, got {backoff!r}")
    return Options(
        max_gap=_int_option(raw, "max_gap", 16, 0, MAX_READ_BITS, device.id),
        max_registers_per_read=_int_option(
            raw, "max_registers_per_read", MAX_READ_REGISTERS, 1, MAX_READ_REGISTERS, device.id
        ),
        max_bits_per_read=_int_option(raw, "max_bits_per_read", MAX_READ_BITS, 1, MAX_READ_BITS, device.id),
        max_in_flight=_int_option(raw, "max_in_flight", 1, 1, 64, device.id),
        max_backoff=float(backoff),
        byte_order=order,
    )


def unit_of(device: Device, endpoint: Endpoint) -> int:
    """The unit id; Modbus/TCP devices default to 1 (many servers ignore it, gateways do not)."""
    if device.unit is not None:
        if endpoint.framing != "tcp" and not 1 <= device.unit <= 247:
            raise ModbusConfigError(f"device {device.id}: an RTU unit id is 1 to 247, got {device.unit}")
        return device.unit
    if endpoint.framing != "tcp":
        raise ModbusConfigError(f"device {device.id}: RTU devices need a unit id (1 to 247) in the contract")
    return 1
