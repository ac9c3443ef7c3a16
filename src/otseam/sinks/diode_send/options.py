"""What a ``type: diode_send`` sink accepts in ``options``; `seam check` and the sink read this one model.

The link settings (FEC, rate, timers) are shared with the receiving side and validated by
:meth:`otseam.diode.config.DiodeSettings.from_options`, called from here, so there is one set of rules.
An unset setting takes the diode's default (docs/diode.md).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import field_validator

from otseam.contract.option_types import Text
from otseam.diode.link_options import LinkOptions

TARGET_FORMS = "'host:port', 'udp://host:port' or '[v6-address]:port', e.g. '192.0.2.10:7400'"


class DiodeTargetError(ValueError):
    pass


def parse_target(text: object) -> tuple[str, int]:
    """The receiver's address. ``udp://`` is accepted (it is what the link is), nothing else."""
    if not isinstance(text, str):
        raise DiodeTargetError(f"diode target {text!r}: write it as {TARGET_FORMS}")
    rest = text.strip()
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme.lower() != "udp":
            raise DiodeTargetError(f"diode target {text!r}: a diode sends UDP; write it as {TARGET_FORMS}")
        rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host.strip("[]"):
        raise DiodeTargetError(f"diode target {text!r}: write it as {TARGET_FORMS}, with a port from 1 to 65535")
    return host.strip("[]"), int(port)


class Options(LinkOptions):
    #: The IT-side receiver across the diode.
    target: Text
    #: Local address to send from (a particular interface), 'host' or 'host:port'.
    bind: Text | None = None
    rate: str | float | None = None
    snapshot_interval: str | float | None = None

    OWN: ClassVar[frozenset[str]] = frozenset({"target", "key_file", "bind"})

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        parse_target(value)
        return value
