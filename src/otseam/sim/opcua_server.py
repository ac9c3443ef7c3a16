"""The plant's process values on an OPC UA server (asyncua), under ``Objects/Plant/<group>/<value>``.

Node ids are strings in the namespace ``urn:seam:sim`` (index 2, the first one a server registers):
``ns=2;s=Tank1.Level``. Floats and scaled values are Doubles in engineering units; switches and pump
states Booleans; counters UInt16/UInt32; the station name a String. The setpoints are writable: a
client's write is picked up at the next tick and handed to the process model, which clamps it to its
range, so a client reads back the value actually applied.

The server offers only the None security policy. It is a simulator for loopback demos and tests; a
real plant's OPC UA server is configured with Basic256Sha256 and certificates.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import ua
from asyncua.server.server import Server

from otseam.sim.layout import NAMESPACE_URI, OPCUA_PATH, PlantPoint, opcua_contract_type, opcua_points
from otseam.sim.process import Value, WaterPlant

log = logging.getLogger(__name__)

_VARIANT = {
    "bool": ua.VariantType.Boolean,
    "uint16": ua.VariantType.UInt16,
    "uint32": ua.VariantType.UInt32,
    "string": ua.VariantType.String,
}


def variant_type(point: PlantPoint) -> Any:
    return _VARIANT.get(point.type, ua.VariantType.Double)


def _convert(point: PlantPoint, value: Value) -> Value:
    kind = opcua_contract_type(point)
    if kind == "bool":
        return bool(value)
    if kind in ("uint16", "uint32"):
        return int(value)
    if kind == "string":
        return str(value)
    return float(value)


class PlantOpcUa:
    def __init__(self, plant: WaterPlant, host: str = "127.0.0.1", port: int = 4840) -> None:
        self.plant = plant
        self.host = host
        self.port = port
        self.namespace = 2
        self._server: Server | None = None
        self._nodes: list[tuple[PlantPoint, ua.NodeId]] = []
        #: What we last wrote to each writable node, to notice a client's write.
        self._written: dict[str, Value] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{OPCUA_PATH}"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Seam simulated water plant")
        await server.set_application_uri("urn:seam:sim:server")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.namespace = await server.register_namespace(NAMESPACE_URI)
        ns = self.namespace
        plant_folder = await server.nodes.objects.add_folder(f"ns={ns};s=Plant", ua.QualifiedName("Plant", ns))
        # Values of the plant as a whole (Plant.Name) sit in the Plant folder itself.
        folders: dict[str, Any] = {"Plant": plant_folder}
        values = self.plant.values()
        for point in opcua_points():
            group, leaf = point.node_path
            if group not in folders:
                folders[group] = await plant_folder.add_folder(f"ns={ns};s={group}", ua.QualifiedName(group, ns))
            node_id = ua.NodeId.from_string(f"ns={ns};s={point.name}")
            variable = await folders[group].add_variable(
                node_id, ua.QualifiedName(leaf, ns), _convert(point, values[point.name]), variant_type(point)
            )
            if point.writable:
                await variable.set_writable()
                self._written[point.name] = _convert(point, values[point.name])
            self._nodes.append((point, node_id))
        await server.start()
        self._server = server

    async def update(self) -> None:
        """Take client writes to setpoints, then publish this tick's values."""
        server = self._server
        if server is None:
            return
        for point, node_id in self._nodes:
            if not point.writable:
                continue
            variant = server.read_attribute_value(node_id).Value
            current = variant.Value if variant is not None else None
            if current is not None and current != self._written.get(point.name):
                try:
                    applied = self.plant.set(point.name, current)
                    log.info("OPC UA client set %s to %s", point.name, applied)
                except (ValueError, TypeError) as exc:
                    log.warning("ignored an OPC UA write to %s: %s", point.name, exc)
        values = self.plant.values()
        for point, node_id in self._nodes:
            value = _convert(point, values[point.name])
            if point.writable:
                self._written[point.name] = value
            await server.write_attribute_value(node_id, ua.DataValue(ua.Variant(value, variant_type(point))))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
