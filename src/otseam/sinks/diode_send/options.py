"""What a ``type: diode_send`` sink accepts in ``options``; `seam check` and the sink read this one model.

The link settings (FEC, rate, timers) are shared with the receiving side and validated by
:meth:`otseam.diode.config.DiodeSettings.from_options`, called from here, so there is one set of rules.
An unset setting takes the diode's default (docs/diode.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from otseam.contract.option_types import ExistingFile, Flag, PluginOptions, Text, Whole, environment_checked

#: Keys that are this sink's own; every other option is a link setting.
_OWN = ("target", "key_file", "bind")
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


class Options(PluginOptions):
    #: The IT-side receiver across the diode.
    target: Text
    #: The pre-shared key, the same file on both sides (``seam diode keygen FILE``).
    key_file: ExistingFile
    #: Local address to send from (a particular interface), 'host' or 'host:port'.
    bind: Text | None = None
    k: Whole | None = None
    overhead: float | None = Field(None, allow_inf_nan=False)
    min_parity: Whole | None = None
    datagram_size: Whole | None = None
    rate: str | float | None = None
    beacon_interval: str | float | None = None
    snapshot_interval: str | float | None = None
    block_timeout: str | float | None = None
    reorder_window: str | float | None = None
    offload: Flag | None = None

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        parse_target(value)
        return value

    @field_validator("key_file")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if environment_checked(info):
            from otseam.diode.config import load_key  # the same reading the sender does at start

            load_key(value)
        return value

    @model_validator(mode="after")
    def _link_settings(self) -> Options:
        from otseam.diode.config import DiodeSettings  # the rules the receiver applies too

        DiodeSettings.from_options(self.link_settings())
        return self

    def link_settings(self) -> dict[str, Any]:
        """The link settings that were given, as written."""
        return {k: v for k, v in self.model_dump().items() if k not in _OWN and v is not None}
