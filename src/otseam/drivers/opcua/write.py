"""The OPC UA write path, for the command executor only.

Nothing in the polling driver calls this module: a value reaches a server only as an approved command,
executed on the OT node (otseam.control.authority). One Write service call per command, with the
Variant type the contract declares for the point (a server refuses a Double for a Float node with
BadTypeMismatch rather than converting it, so the type must be right). The writer opens its own
session, closed when the command is done.

Values here are raw (before the contract's scaling); the executor converts engineering units.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

from otseam.contract.models import Device, Point
from otseam.core.records import Quality, Value
from otseam.drivers.opcua._ua import ua
from otseam.drivers.opcua.config import parse_endpoint, parse_options, point_specs
from otseam.drivers.opcua.convert import converter, decode, status_name
from otseam.drivers.opcua.driver import to_ua_node
from otseam.drivers.opcua.session import Session

_VARIANT = {
    "bool": "Boolean",
    "int16": "Int16",
    "uint16": "UInt16",
    "int32": "Int32",
    "uint32": "UInt32",
    "int64": "Int64",
    "uint64": "UInt64",
    "float32": "Float",
    "float64": "Double",
    "string": "String",
}


class WriteError(Exception):
    """The write could not be made, or its outcome is unknown; the message says which and why."""


class OpcUaWriter:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.url = device.endpoint.strip()
        parse_endpoint(self.url, device.id)
        self.options = parse_options(device)
        self.specs = {s.key: s for s in point_specs(device)}
        self.timeout = device.constraints.timeout
        self.session: Session | None = None

    async def __aenter__(self) -> OpcUaWriter:
        session = Session(self.url, self.options, self.timeout, f"{self.device.id} (command)")
        try:
            async with asyncio.timeout(self.timeout * 3):
                await session.open()
        except (OSError, TimeoutError, ua.UaError) as exc:
            await session.drop()
            raise WriteError(
                f"{self.device.id}: cannot open a session at {self.url}: {exc or type(exc).__name__}"
            ) from None
        self.session = session
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _point(self, point_id: str) -> Point:
        point = next((p for p in self.device.points if p.id == point_id), None)
        if point is None:
            raise WriteError(f"device {self.device.id} has no point {point_id}")
        return point

    async def _call(self, what: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            raise WriteError(f"{self.device.id}: no answer to {what} within {self.timeout:g}s") from None
        except (OSError, ua.UaError) as exc:
            raise WriteError(f"{self.device.id}: {what} failed: {exc}") from None

    async def read(self, point_id: str) -> Value:
        point = self._point(point_id)
        spec = self.specs[self.device.key(point)]
        assert self.session is not None, "use the writer as 'async with'"
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=to_ua_node(spec.node), AttributeId=ua.AttributeIds.Value)],
        )
        results = await self._call("Read", self.session.uasession.read(params))
        value, quality, _ = decode(results[0] if results else None, converter(spec.type, spec.length), time.time())
        if quality not in (Quality.GOOD, Quality.UNCERTAIN) or value is None:
            raise WriteError(f"{self.device.id}/{point_id}: reading it gave {quality.label}")
        return value

    async def write(self, point_id: str, value: Value) -> None:
        point = self._point(point_id)
        spec = self.specs[self.device.key(point)]
        assert self.session is not None, "use the writer as 'async with'"
        variant_type = getattr(ua.VariantType, _VARIANT[point.type])
        if point.type == "bool" and not isinstance(value, bool):
            raise WriteError(f"{self.device.id}/{point_id}: a bool point takes true or false")
        if point.type == "string" and not isinstance(value, str):
            raise WriteError(f"{self.device.id}/{point_id}: a string point takes text")
        if point.type not in ("bool", "string") and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise WriteError(f"{self.device.id}/{point_id}: a {point.type} point takes a number")
        if point.type.startswith(("int", "uint")) and isinstance(value, float):
            if not value.is_integer():
                raise WriteError(f"{self.device.id}/{point_id}: {value} is not a whole number")
            value = int(value)
        try:
            variant = ua.Variant(value, variant_type)
        except Exception as exc:  # asyncua checks ranges when it builds the Variant
            raise WriteError(f"{self.device.id}/{point_id}: {value!r} is not a {point.type}: {exc}") from None
        params = ua.WriteParameters(
            NodesToWrite=[
                ua.WriteValue(
                    NodeId=to_ua_node(spec.node),
                    AttributeId=ua.AttributeIds.Value,
                    Value=ua.DataValue(Value=variant),
                )
            ]
        )
        results = await self._call("Write", self.session.uasession.write(params))
        code = results[0].value if results else None
        if code is None or code & 0x80000000:
            name = status_name(code) if code is not None else "no result"
            raise WriteError(f"{self.device.id}/{point_id}: the server refused the write: {name}")
