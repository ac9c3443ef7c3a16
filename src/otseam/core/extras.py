"""Optional parts of Seam and the pip extra that installs each.

A plain ``pip install otseam`` runs an edge with Modbus and the local historian. Everything else is an
extra (``pip install 'otseam[opcua]'``), and using a part whose extra is missing stops with one message
that names the extra, never with a traceback about a module the user has never heard of.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The top-level modules each extra brings (as pyproject.toml's optional-dependencies install them; the
#: diode, the console and Modbus RTU need none: their modules are runtime dependencies).
EXTRAS: dict[str, tuple[str, ...]] = {
    "opcua": ("asyncua",),
    "postgres": ("psycopg",),
    "mqtt": ("aiomqtt", "paho"),
    "sparkplug": ("aiomqtt", "paho", "google.protobuf"),
    "nats": ("nats", "nkeys"),
}


#: Parts named otherwise than the extra they need (a part named like its extra needs no entry).
PART_EXTRAS: dict[str, str] = {"host": "sparkplug", "uns_json": "mqtt", "fleet_ingest": "nats"}


class MissingExtra(LookupError):
    """A part of Seam whose optional dependencies are not installed."""

    def __init__(self, part: str, extra: str, module: str | None = None) -> None:
        self.part, self.extra = part, extra
        missing = f" (no module named '{module}')" if module else ""
        super().__init__(f"{part} needs the extra: pip install 'otseam[{extra}]'{missing}")


def extra_for(module: str | None, prefer: str | None = None) -> str | None:
    """The extra that installs ``module`` (a name from ModuleNotFoundError), or None.

    ``prefer`` is the part's own name (a plugin, a command): when the module is in several extras, the
    part's own extra is the one it needs (aiomqtt for the sparkplug sink or `seam host`: sparkplug).
    """
    if not module:
        return None
    # A parent package counts too: without protobuf, importing google.protobuf fails on "google".
    extras = [
        e for e, ms in EXTRAS.items() if any(module in (m, *_parents(m)) or module.startswith(m + ".") for m in ms)
    ]
    own = PART_EXTRAS.get(prefer, prefer) if prefer else None
    if own in extras:
        return own
    return extras[0] if extras else None


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def load(module: str, part: str, extra: str) -> ModuleType:
    """Import ``module`` (a Seam module that needs ``extra``), or raise :class:`MissingExtra`.

    Only a missing third-party module of that extra becomes MissingExtra; any other import error is a
    bug and propagates as it is.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and extra_for(exc.name) is not None:
            raise MissingExtra(part, extra, exc.name) from exc
        raise


def available(extra: str) -> bool:
    """True when every module of ``extra`` can be imported."""
    import importlib.util

    for module in EXTRAS[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True
