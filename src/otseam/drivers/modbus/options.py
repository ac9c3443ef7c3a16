"""What a ``driver: modbus`` device accepts in its contract entry: ``options``, the endpoint, the unit id.

One definition serves both `seam check` (which loads this file alone, without the driver) and the
driver itself, so the two always agree. Light imports only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field

from otseam.contract.option_types import PluginOptions, Seconds, Whole
from otseam.protocols.modbus.tables import MAX_READ_BITS, MAX_READ_REGISTERS

if TYPE_CHECKING:
    from otseam.contract.models import Device

#: Protocol limits of one read (Modbus application protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS = MAX_READ_REGISTERS
MAX_BITS = MAX_READ_BITS

Framing = Literal["tcp", "rtu", "rtu+tcp"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class ModbusConfigError(ValueError):
    """The contract asks for something the Modbus driver cannot do."""


class Options(PluginOptions):
    """``device.options`` of a Modbus device."""

    #: Registers (or bits) of unused address space a single read may span to save a request.
    max_gap: Whole = Field(16, ge=0, le=MAX_BITS)
    max_registers_per_read: Whole = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS)
    max_bits_per_read: Whole = Field(MAX_BITS, ge=1, le=MAX_BITS)
    #: Requests that may be outstanding on one TCP connection. 1 is safe for every device; gateways
    #: and servers that queue requests by transaction id allow more.
    max_in_flight: Whole = Field(1, ge=1, le=64)
    #: Upper bound of the reconnect and dead-unit backoff, seconds.
    max_backoff: Seconds = Field(30.0, ge=0.1, le=3600)
    byte_order: ByteOrder = "ABCD"


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


ENDPOINT_FORMS = "tcp://HOST:PORT, rtu+tcp://HOST:PORT or rtu:///dev/ttyXXX?baudrate=19200&parity=N&stopbits=1"


def parse_endpoint(text: str, device_id: str = "") -> Endpoint:
    """``tcp://host:port``, ``rtu+tcp://host:port``, ``rtu:///dev/ttyUSB0?baudrate=19200&parity=E&stopbits=1``.

    ``modbus://`` and ``modbus+tcp://`` are read as ``tcp://``, and a bare ``host:port`` too: those are
    the forms people write."""
    where = f"device {device_id}: " if device_id else ""
    hint = f"write {ENDPOINT_FORMS}"
    stripped = text.strip()
    if "://" not in stripped and stripped and not stripped.startswith("/"):
        stripped = f"tcp://{stripped}"
    try:
        parts = urlsplit(stripped)
    except ValueError:
        raise ModbusConfigError(f"{where}endpoint {text!r} is not a URL; {hint}") from None
    scheme = "tcp" if parts.scheme in ("modbus", "modbus+tcp", "modbus-tcp") else parts.scheme
    if scheme in ("tcp", "rtu+tcp"):
        if parts.path not in ("", "/") or parts.query:
            raise ModbusConfigError(f"{where}endpoint {text!r} has a path or query a TCP endpoint does not use; {hint}")
        try:
            port = parts.port if parts.port is not None else 502
        except ValueError:
            raise ModbusConfigError(f"{where}endpoint {text!r} has an invalid port; {hint}") from None
        if not parts.hostname or port == 0:
            raise ModbusConfigError(f"{where}endpoint {text!r} has no host or port; {hint}")
        return Endpoint(scheme, host=parts.hostname, port=port)  # type: ignore[arg-type]
    if scheme == "rtu":
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


def unit_of(device: Device, endpoint: Endpoint) -> int:
    """The unit id; Modbus/TCP devices default to 1 (many servers ignore it, gateways do not)."""
    if device.unit is not None:
        if endpoint.framing != "tcp" and not 1 <= device.unit <= 247:
            raise ModbusConfigError(f"device {device.id}: an RTU unit id is 1 to 247, got {device.unit}")
        return device.unit
    if endpoint.framing != "tcp":
        raise ModbusConfigError(f"device {device.id}: RTU devices need a unit id (1 to 247) in the contract")
    return 1


def check_device(device: Device, options: Options) -> list[tuple[str, str]]:
    """The device fields only this driver understands, as `seam check` reports them."""
    try:
        endpoint = parse_endpoint(device.endpoint)
    except ModbusConfigError as exc:
        return [("endpoint", str(exc))]
    try:
        unit_of(device, endpoint)
    except ModbusConfigError as exc:
        return [("unit", str(exc).removeprefix(f"device {device.id}: "))]
    return []
