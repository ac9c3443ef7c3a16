"""The options of a ``capture`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, model_validator

from otseam.contract.option_types import ExistingFile

Port = Annotated[int, Field(ge=1, le=65535)]


class Options(BaseModel):
    """Passive monitoring of a span port or of a capture file. See README.md."""

    model_config = ConfigDict(extra="forbid")

    #: The interface to capture on (a switch's span or mirror port; needs CAP_NET_RAW). Exactly one of
    #: ``interface`` and ``file``.
    interface: Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[^/\s]+$")] | None = None
    #: A pcap or pcapng file to analyse once (relative paths are relative to the contract file).
    file: Annotated[str, Field(min_length=1)] | None = None
    #: Server ports that carry Modbus/TCP and OPC UA binary (traffic elsewhere is still recognised by its
    #: content and reported as on an unusual port).
    modbus_ports: list[Port] = Field(default_factory=lambda: [502, 802], min_length=1)
    opcua_ports: list[Port] = Field(default_factory=lambda: [4840], min_length=1)
    #: Hosts allowed to act as Modbus masters / OPC UA clients, in addition to the contract's.
    allow_masters: list[IPvAnyAddress] = Field(default_factory=list)
    #: Build the allow-list from the contract's devices (who may talk to them, and how).
    allow_from_contract: bool = True
    #: A capture taken when all was well: the pairs and function codes it shows are allowed.
    baseline: ExistingFile | None = None
    #: The socket's receive buffer in bytes: larger survives longer bursts without kernel drops.
    receive_buffer: Annotated[int, Field(ge=64 * 1024, le=1 << 30)] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> Options:
        if (self.interface is None) == (self.file is None):
            raise ValueError("give exactly one of 'interface' (live capture) and 'file' (a capture file)")
        return self
