"""The options of a ``diode_receive`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from otseam.contract.option_types import ExistingFile, PluginOptions, environment_checked

#: The options the receiver shares with the sender; both sides must agree on the FEC layout.
SHARED = ("k", "overhead", "min_parity", "datagram_size", "offload", "beacon_interval")


def parse_listen(value: Any) -> tuple[str, int]:
    """``host:port`` (also ``udp://host:port`` and ``[::1]:port``) → (host, port)."""
    text = str(value).strip()
    if text.startswith("udp://"):
        text = text[len("udp://") :]
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: write the address to receive on as host:port, e.g. 0.0.0.0:7400")
    return host.strip("[]"), int(port)


class Options(PluginOptions):
    """Receive a one-way conduit into the node's journal. See README.md in this folder."""

    #: host:port to receive on (the IT end of the diode).
    listen: str
    #: The pre-shared key file, the same on both sides (``seam diode keygen``). Never inline.
    key_file: ExistingFile
    #: Where the receiver keeps which offsets it has stored (default: beside the journal).
    state: str | None = None
    k: Annotated[int, Field(ge=1, le=255)] | None = None
    overhead: Annotated[float, Field(gt=0, le=4)] | None = None
    min_parity: Annotated[int, Field(ge=0, le=64)] | None = None
    datagram_size: Annotated[int, Field(ge=256, le=65507)] | None = None
    offload: bool | None = None
    beacon_interval: str | float | None = None
    block_timeout: str | float | None = None
    reorder_window: str | float | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("key_file")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if environment_checked(info):
            from otseam.diode.config import load_key  # the same reading the receiver does at start

            load_key(value)
        return value

    @model_validator(mode="after")
    def _link_settings(self) -> Options:
        from otseam.diode.config import DiodeSettings  # the rules the sender applies too

        DiodeSettings.from_options(self.settings_options())
        return self

    def settings_options(self) -> dict[str, Any]:
        """What DiodeSettings.from_options takes: the link settings given, nothing else."""
        names = (*SHARED, "block_timeout", "reorder_window")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}
