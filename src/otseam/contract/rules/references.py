"""Reference rules (REF-*): ids are unique and everything named elsewhere exists."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

from otseam.contract.loader import LoadedContract, PathKey
from otseam.contract.rules.registry import Hit, Severity, rule


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


def _duplicates(loaded: LoadedContract, items: Sequence[_HasId], base: PathKey, what: str) -> Iterator[Hit]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in seen:
            first = loaded.at((*base, seen[item.id], "id"))
            yield Hit((*base, i, "id"), f"{what} id '{item.id}' is used again (first on line {first.line})")
        else:
            seen[item.id] = i


@rule(
    "REF-001",
    Severity.ERROR,
    "Ids are unique in their list",
    "rename one of the two: ids are how everything else refers to them",
)
def unique_ids(loaded: LoadedContract) -> Iterator[Hit]:
    c = loaded.contract
    yield from _duplicates(loaded, c.people, ("people",), "person")
    yield from _duplicates(loaded, c.zones, ("zones",), "zone")
    yield from _duplicates(loaded, c.conduits, ("conduits",), "conduit")
    yield from _duplicates(loaded, c.devices, ("devices",), "device")
    yield from _duplicates(loaded, c.sinks, ("sinks",), "sink")
    yield from _duplicates(loaded, c.commands, ("commands",), "command")
    yield from _duplicates(loaded, c.objectives, ("objectives",), "objective")
    for i, device in enumerate(c.devices):
        yield from _duplicates(loaded, device.points, ("devices", i, "points"), f"device '{device.id}' point")
        for j, point in enumerate(device.points):
            yield from _duplicates(
                loaded, point.alarms, ("devices", i, "points", j, "alarms"), f"point '{point.id}' alarm"
            )


@rule(
    "REF-002",
    Severity.ERROR,
    "A command writes a point that exists",
    "write the point as '<device>/<point>' using ids declared under 'devices:'",
)
def command_point_exists(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        if contract.find_point(command.point) is None:
            yield Hit(
                ("commands", i, "point"), f"command '{command.id}' names point '{command.point}', which does not exist"
            )


@rule(
    "REF-003",
    Severity.ERROR,
    "Every point a sink lists exists (each pattern matches at least one point)",
    "write points as '<device>/<point>', or a pattern such as 'plc1/*', matching declared points",
)
def sink_points_exist(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    keys = contract.point_keys()
    for i, sink in enumerate(contract.sinks):
        for j, pattern in enumerate(sink.points):
            if not any(fnmatchcase(key, pattern) for key in keys):
                yield Hit(("sinks", i, "points", j), f"sink '{sink.id}' lists '{pattern}', which matches no point")


@rule("REF-004", Severity.ERROR, "A device sits in a declared zone", "set 'zone:' to the id of a zone under 'zones:'")
def device_zone_exists(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, device in enumerate(contract.devices):
        if contract.zone(device.zone) is None:
            yield Hit(("devices", i, "zone"), f"device '{device.id}' is in zone '{device.zone}', which is not declared")


#: Plugins Seam ships (DESIGN.md), whether or not this installation has them yet; anything else must be
#: installed as a package under otseam.drivers / otseam.sinks to be accepted.
SHIPPED_DRIVERS = frozenset({"modbus", "opcua", "generator"})
SHIPPED_SINKS = frozenset({"historian", "postgres", "sparkplug", "uns_json", "diode_send", "file"})


def _installed(package: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        return False


def _installed_names(package: str) -> set[str]:
    try:
        module = importlib.import_module(package)
    except ImportError:
        return set()
    return {info.name for info in pkgutil.iter_modules(getattr(module, "__path__", []))}


@rule(
    "REF-005",
    Severity.ERROR,
    "Every device names a known driver and every sink a known sink type",
    "check the spelling against the drivers (otseam/drivers) and sinks (otseam/sinks) Seam has",
)
def plugins_known(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for kind, package, shipped, items, key in (
        ("driver", "otseam.drivers", SHIPPED_DRIVERS, contract.devices, "driver"),
        ("sink type", "otseam.sinks", SHIPPED_SINKS, contract.sinks, "type"),
    ):
        section = "devices" if key == "driver" else "sinks"
        for i, item in enumerate(items):
            name = str(getattr(item, key))
            if name in shipped or _installed(package, name):
                continue
            known = sorted(shipped | _installed_names(package))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
            yield Hit((section, i, key), f"there is no {kind} named '{name}'", hint)
