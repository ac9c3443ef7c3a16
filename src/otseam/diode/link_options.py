"""The options both ends of a one-way link take: the key and the link settings they must agree on.

Light on purpose (pydantic and the contract's option types only): `seam check` reads it through each
end's ``options.py`` without loading the diode. The settings themselves are validated by
``DiodeSettings.from_options``, the rules the running sender and receiver apply, so there is one set.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from otseam.contract.option_types import ExistingFile, Flag, PluginOptions, Whole, environment_checked


class LinkOptions(PluginOptions):
    #: The pre-shared key file, the same on both sides (``seam diode keygen FILE``). Never inline.
    key_file: ExistingFile
    k: Whole | None = None
    overhead: float | None = Field(None, allow_inf_nan=False)
    min_parity: Whole | None = None
    datagram_size: Whole | None = None
    beacon_interval: str | float | None = None
    block_timeout: str | float | None = None
    reorder_window: str | float | None = None
    offload: Flag | None = None

    #: The end's own options, which are not link settings (a subclass names its own).
    OWN: ClassVar[frozenset[str]] = frozenset({"key_file"})

    @field_validator("key_file")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if environment_checked(info):
            from otseam.diode.config import load_key  # the same reading each end does at start

            load_key(value)
        return value

    @model_validator(mode="after")
    def _link(self) -> LinkOptions:
        from otseam.diode.config import DiodeSettings  # the rules both running ends apply

        DiodeSettings.from_options(self.link_settings())
        return self

    def link_settings(self) -> dict[str, Any]:
        """The link settings that were given, as written (what ``DiodeSettings.from_options`` takes)."""
        return {k: v for k, v in self.model_dump().items() if k not in self.OWN and v is not None}
