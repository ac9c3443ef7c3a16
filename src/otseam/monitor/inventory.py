"""The asset inventory built from what the wire shows: hosts, their roles and what they said about themselves.

A host is a *master* when it sends requests (opens connections to an industrial port) and a *slave*
(server) when it answers them; some are both (gateways). Vendor, product code and revision come from
Modbus device identification responses (function 43, MEI 14), the only place a device names itself.

Changes are recorded as they happen (a new asset, a new identification) so that they can be journalled
as events, the same way alerts are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Hosts tracked; beyond this, new hosts are counted but not kept (a flood must not exhaust memory).
MAX_ASSETS = 65_536


@dataclass(slots=True)
class Asset:
    ip: str
    first_seen: float
    last_seen: float
    roles: set[str] = field(default_factory=set)
    protocols: set[str] = field(default_factory=set)
    #: Ports this host serves on.
    ports: set[int] = field(default_factory=set)
    unit_ids: set[int] = field(default_factory=set)
    #: Function codes sent (as a master) or answered (as a slave).
    functions: set[int] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    identity: dict[str, str] = field(default_factory=dict)
    opcua_services: set[str] = field(default_factory=set)
    opcua_security: set[str] = field(default_factory=set)
    declared_as: str | None = None

    @property
    def role(self) -> str:
        if {"master", "slave"} <= self.roles:
            return "both"
        return next(iter(self.roles), "unknown")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "role": self.role,
            "protocols": sorted(self.protocols),
            "ports": sorted(self.ports),
            "unit_ids": sorted(self.unit_ids),
            "function_codes": sorted(self.functions),
            "first_seen": round(self.first_seen, 6),
            "last_seen": round(self.last_seen, 6),
            "vendor": self.identity.get("vendor"),
            "product": self.identity.get("product_code"),
            "revision": self.identity.get("revision"),
            "identity": dict(self.identity),
            "peers": sorted(self.peers),
            "opcua_services": sorted(self.opcua_services),
            "opcua_security": sorted(self.opcua_security),
            "declared_as": self.declared_as,
        }


@dataclass(slots=True)
class Change:
    """An inventory change worth an event: ``kind`` is ``inventory.new_asset`` or ``inventory.identified``."""

    ts: float
    kind: str
    ip: str
    message: str
    data: dict[str, Any]


class Inventory:
    def __init__(self, declared: dict[str, str] | None = None) -> None:
        self.assets: dict[str, Asset] = {}
        self.changes: list[Change] = []
        self.dropped = 0
        #: address -> device id, from the contract, when one was given.
        self.declared = declared

    def _asset(self, ip: str, ts: float) -> Asset | None:
        asset = self.assets.get(ip)
        if asset is None:
            if len(self.assets) >= MAX_ASSETS:
                self.dropped += 1
                return None
            asset = self.assets[ip] = Asset(ip, ts, ts)
            if self.declared is not None:
                asset.declared_as = self.declared.get(ip)
            self.changes.append(Change(ts, "inventory.new_asset", ip, f"new host {ip}", {"ip": ip}))
        elif ts > asset.last_seen:
            asset.last_seen = ts
        elif ts < asset.first_seen:
            asset.first_seen = ts
        return asset

    def connection(self, client: str, server: str, port: int, protocol: str, ts: float) -> None:
        master = self._asset(client, ts)
        slave = self._asset(server, ts)
        if master is not None:
            master.roles.add("master")
            master.protocols.add(protocol)
            master.peers.add(server)
        if slave is not None:
            slave.roles.add("slave")
            slave.protocols.add(protocol)
            slave.ports.add(port)
            slave.peers.add(client)

    def modbus(self, client: str, server: str, unit: int, function: int, ts: float, identity: dict[str, str]) -> None:
        master = self._asset(client, ts)
        slave = self._asset(server, ts)
        if master is not None:
            master.functions.add(function)
        if slave is not None:
            slave.unit_ids.add(unit)
            slave.functions.add(function)
            known = {
                k: v
                for k, v in identity.items()
                if k in ("vendor", "product_code", "revision", "product_name", "model_name")
            }
            if known and any(slave.identity.get(k) != v for k, v in known.items()):
                slave.identity.update(known)
                summary = " ".join(known.get(k, "") for k in ("vendor", "product_code", "revision")).strip()
                self.changes.append(
                    Change(
                        ts, "inventory.identified", server, f"{server} unit {unit} identifies as {summary}", dict(known)
                    )
                )

    def opcua(self, client: str, server: str, service: str | None, security: str, ts: float) -> None:
        slave = self._asset(server, ts)
        if slave is not None:
            slave.opcua_security.add(security)
            if service:
                slave.opcua_services.add(service)
        self._asset(client, ts)

    def undeclared(self) -> list[Asset]:
        """Servers seen on the wire that the contract does not declare (empty without a contract)."""
        if self.declared is None:
            return []
        return [a for a in self.assets.values() if "slave" in a.roles and a.declared_as is None]
