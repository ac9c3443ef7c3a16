"""Who may talk to whom: the allow-list of masters, servers, ports and function codes.

It comes from one or more of three places, merged:

* the contract (``seam watch --contract seam.yaml``). Each declared device whose endpoint names an IP
  address (``tcp://10.0.0.5:502``, ``opc.tcp://10.0.0.9:4840``) is a server that may be reached on that
  port. Its masters are the addresses listed in the device's ``monitor.allowed_masters`` (Seam's
  edge gateway, the SCADA server). Its function codes follow from its points: ``co:`` points allow 1,
  ``di:`` 2, ``hr:`` 3 and ``ir:`` 4; writable coil and register points, or points named by a command,
  add 5/15 and 6/16. ``monitor.allowed_functions`` (a list of codes) replaces that derivation.
  Host names in endpoints are not resolved (a passive monitor must not send DNS queries): use addresses.
* flags: ``--allow-master IP`` (repeatable) allows a master towards every server, every function.
* a baseline capture (``--baseline FILE``): every client/server pair seen in it, with the function codes
  it used, becomes allowed; a pair seen later that is not in the baseline is a finding (MB-021).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from otseam.contract.models import Contract, Device

_READ_BY_PREFIX = {"co": 1, "di": 2, "hr": 3, "ir": 4}
_WRITE_BY_PREFIX = {"co": (5, 15), "hr": (6, 16)}


class PolicyError(ValueError):
    """The allow-list cannot be built (a bad address or option), with a message for the user."""


def _address(text: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise PolicyError(f"{where}: {text!r} is not an IP address") from None


@dataclass(slots=True)
class DeclaredServer:
    device: str
    ports: set[int] = field(default_factory=set)
    masters: set[str] = field(default_factory=set)
    #: None means "no restriction declared".
    functions: set[int] | None = None


@dataclass(slots=True)
class Policy:
    #: Masters allowed towards every server (flags).
    masters: set[str] = field(default_factory=set)
    #: Servers declared by the contract, by address.
    declared: dict[str, DeclaredServer] = field(default_factory=dict)
    #: Pairs learned from a baseline, with their function codes.
    pairs: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def from_contract(self) -> bool:
        return "contract" in self.sources

    def is_master(self, client: str, server: str) -> bool:
        if client in self.masters or (client, server) in self.pairs:
            return True
        declared = self.declared.get(server)
        return declared is not None and client in declared.masters

    def function_allowed(self, client: str, server: str, function: int) -> bool:
        if client in self.masters:
            return True
        learned = self.pairs.get((client, server))
        if learned is not None and function in learned:
            return True
        declared = self.declared.get(server)
        if declared is not None and client in declared.masters:
            return declared.functions is None or function in declared.functions
        return False

    def flow_verdict(self, client: str, server: str, port: int) -> tuple[str, str] | None:
        """None if the flow is allowed, else (rule id, why)."""
        declared = self.declared.get(server)
        if declared is not None and port not in declared.ports:
            return "MB-020", f"device {declared.device} is declared on port(s) {sorted(declared.ports)} only"
        if self.is_master(client, server):
            return None
        if declared is not None:
            return "MB-020", f"{client} is not an allowed master of device {declared.device}"
        if self.pairs:
            return "MB-021", "this pair was not seen in the baseline"
        if self.from_contract:
            return "MB-020", "the contract declares no device at this address"
        return "MB-020", f"{client} is not an allowed master"

    def add_masters(self, addresses: Iterable[str]) -> None:
        for text in addresses:
            self.masters.add(_address(text, "--allow-master"))
        if "flags" not in self.sources:
            self.sources.append("flags")

    def add_contract(self, contract: Contract) -> None:
        commanded = {c.point for c in contract.commands}
        for device in contract.devices:
            parsed = _endpoint(device)
            if parsed is None:
                continue
            host, port = parsed
            server = self.declared.setdefault(host, DeclaredServer(device.id))
            server.ports.add(port)
            # Addresses and codes were validated (with file positions) when the contract was loaded.
            server.masters.update(device.monitor.allowed_masters)
            explicit = device.monitor.allowed_functions
            if explicit is not None:
                server.functions = (server.functions or set()) | set(explicit)
            elif device.driver == "modbus":
                codes = set()
                for point in device.points:
                    prefix = point.address.split(":", 1)[0].strip().lower()
                    if prefix in _READ_BY_PREFIX:
                        codes.add(_READ_BY_PREFIX[prefix])
                    if prefix in _WRITE_BY_PREFIX and (point.writable or device.key(point) in commanded):
                        codes.update(_WRITE_BY_PREFIX[prefix])
                server.functions = (server.functions or set()) | codes
        if "contract" not in self.sources:
            self.sources.append("contract")

    def add_baseline(self, pairs: dict[tuple[str, str], set[int]]) -> None:
        for pair, codes in pairs.items():
            self.pairs.setdefault(pair, set()).update(codes)
        if "baseline" not in self.sources:
            self.sources.append("baseline")


def _endpoint(device: Device) -> tuple[str, int] | None:
    """(address, port) of a device reached over TCP, when its endpoint names an IP address."""
    try:
        parts = urlsplit(device.endpoint)
        port = parts.port
    except ValueError:
        return None
    defaults = {"tcp": 502, "opc.tcp": 4840, "modbus": 502}
    if parts.scheme not in defaults or not parts.hostname:
        return None
    try:
        host = str(ipaddress.ip_address(parts.hostname))
    except ValueError:
        return None
    return host, port or defaults[parts.scheme]
