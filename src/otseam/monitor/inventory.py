"""The asset inventory built from what the wire shows: hosts, their roles and what they said about themselves.

A host is a *master* when it sends requests (opens connections to an industrial port) and a *slave*
(server) when it answers them; some are both (gateways). What else is known about a host depends on
the protocol: each analyzer registers its fields (Modbus: unit ids and function codes; OPC UA: services
and security modes) and fills them (``analyzers/<protocol>/inventory.py``), and a device that names
itself (Modbus device identification) sets its identity with :meth:`Inventory.identified`.

Changes are recorded as they happen (a new asset, a new identification) so that they can be journalled
as events, the same way alerts are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Hosts tracked; beyond this, new hosts are counted but not kept (a flood must not exhaust memory).
MAX_ASSETS = 65_536
#: The protocol-specific fields of an asset, in the order they are reported (registered by the analyzers).
FIELDS: list[str] = []


def register_fields(*names: str) -> None:
    for name in names:
        if name not in FIELDS:
            FIELDS.append(name)


@dataclass(slots=True)
class Asset:
    ip: str
    first_seen: float
    last_seen: float
    roles: set[str] = field(default_factory=set)
    protocols: set[str] = field(default_factory=set)
    #: Ports this host serves on.
    ports: set[int] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    #: What the device said about itself (vendor, product_code, revision, ...).
    identity: dict[str, str] = field(default_factory=dict)
    #: The analyzers' fields (see FIELDS): each a set of values.
    fields: dict[str, set[Any]] = field(default_factory=dict)
    declared_as: str | None = None

    def add(self, name: str, value: object) -> None:
        values = self.fields.get(name)
        if values is None:
            values = self.fields[name] = set()
        values.add(value)

    @property
    def role(self) -> str:
        if {"master", "slave"} <= self.roles:
            return "both"
        return next(iter(self.roles), "unknown")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": self.ip,
            "role": self.role,
            "protocols": sorted(self.protocols),
            "ports": sorted(self.ports),
        }
        for name in FIELDS:
            out[name] = sorted(self.fields.get(name, ()))
        out.update(
            first_seen=round(self.first_seen, 6),
            last_seen=round(self.last_seen, 6),
            vendor=self.identity.get("vendor"),
            product=self.identity.get("product_code"),
            revision=self.identity.get("revision"),
            identity=dict(self.identity),
            peers=sorted(self.peers),
            declared_as=self.declared_as,
        )
        return out


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

    def asset(self, ip: str, ts: float) -> Asset | None:
        """The asset of ``ip``, created on first sight (None once MAX_ASSETS are tracked)."""
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
        master = self.asset(client, ts)
        slave = self.asset(server, ts)
        if master is not None:
            master.roles.add("master")
            master.protocols.add(protocol)
            master.peers.add(server)
        if slave is not None:
            slave.roles.add("slave")
            slave.protocols.add(protocol)
            slave.ports.add(port)
            slave.peers.add(client)

    def identified(self, asset: Asset, ts: float, identity: dict[str, str], where: str) -> None:
        """``asset`` named itself: keep what it said, and record a change when that is news."""
        if identity and any(asset.identity.get(k) != v for k, v in identity.items()):
            asset.identity.update(identity)
            summary = " ".join(identity.get(k, "") for k in ("vendor", "product_code", "revision")).strip()
            self.changes.append(
                Change(
                    ts, "inventory.identified", asset.ip, f"{asset.ip} {where} identifies as {summary}", dict(identity)
                )
            )

    def undeclared(self) -> list[Asset]:
        """Servers seen on the wire that the contract does not declare (empty without a contract)."""
        if self.declared is None:
            return []
        return [a for a in self.assets.values() if "slave" in a.roles and a.declared_as is None]
