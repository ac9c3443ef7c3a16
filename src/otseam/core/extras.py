"""Optional parts of Seam and the pip extra that installs each.

A plain ``pip install otseam`` runs an edge with Modbus and the local historian. Everything else is an
extra (``pip install 'otseam[opcua]'``), and using a part whose extra is missing stops with one message
that names the extra, never with a traceback about a module the user has never heard of.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The top-level modules each extra brings (as pyproject.toml's optional-dependencies install them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "opcua": ("asyncua",),
    "postgres": ("psycopg",),
    "mqtt": ("aiomqtt", "paho"),
    "sparkplug": ("aiomqtt", "paho", "google.protobuf"),
    "diode": ("pyeclib",),
    "console": ("aiohttp",),
    "serial": ("serial",),
    "nats": ("nats", "nkeys"),
}


class MissingExtra(LookupError):
    """A part of Seam whose optional dependencies are not installed."""

    def __init__(self, part: str, extra: str, module: str | None = None) -> None:
        self.part, self.extra = part, extra
        missing = f" (no module named '{module}')" if module else ""
        super().__init__(f"{part} needs the extra: pip install 'otseam[{extra}]'{missing}")


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a name from ModuleNotFoundError), or None."""
    if not module:
        return None
    for extra, modules in EXTRAS.items():
        if any(module == m or module.startswith(m + ".") for m in modules):
            return extra
    return None


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
