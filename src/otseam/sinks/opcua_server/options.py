"""The ``options`` of a ``type: opcua_server`` sink (checked by ``seam check`` without importing asyncua)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The security policies offered; "None" only when asked for by name (loopback tests, demos).
Policy = Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss", "None"]
Mode = Literal["Sign", "SignAndEncrypt"]
DEFAULT_POLICIES: tuple[Policy, ...] = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
DEFAULT_MODES: tuple[Mode, ...] = ("SignAndEncrypt", "Sign")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Where the server listens: opc.tcp://HOST:PORT[/path].
    endpoint: str = "opc.tcp://127.0.0.1:4840/seam"
    #: Security policies offered, each with every mode in ``security_modes``.
    security_policies: list[Policy] = Field(default_factory=lambda: list(DEFAULT_POLICIES), min_length=1)
    security_modes: list[Mode] = Field(default_factory=lambda: list(DEFAULT_MODES), min_length=1)
    #: The server's application instance certificate (DER or PEM) and its private key (PEM).
    certificate: str | None = None
    private_key: str | None = None
    #: A directory of client certificates (DER or PEM) this server trusts; any other client is refused.
    trusted_clients: str | None = None
    #: Anonymous sessions. Off by default: every client logs in with a user name and password.
    anonymous: bool = False
    #: A file of ``user:argon2-hash`` lines (``seam`` writes them; see README). No file, no user login.
    users_file: str | None = None
    #: The id of a ``historian`` sink on the same node: HistoryRead is served from its database.
    historian: str | None = None
    #: The diode link's health as variables: "auto" when the node has a diode_receive source.
    diode_link: Literal["auto", "on", "off"] = "auto"
    #: The namespace of the plant's nodes; default urn:otseam:<enterprise>:<site>.
    namespace_uri: str | None = None
    #: Most values one HistoryRead returns per node before a continuation point.
    max_history_values: int = Field(default=10_000, ge=1, le=1_000_000)
    application_uri: str = "urn:otseam:opcua-server"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme != "opc.tcp" or not url.hostname or not url.port:
            raise ValueError(f"endpoint {value!r}: write opc.tcp://HOST:PORT/path, e.g. opc.tcp://0.0.0.0:4840/seam")
        if url.username or url.password:
            raise ValueError("endpoint: no credentials in the URL")
        return value

    @model_validator(mode="after")
    def _security(self) -> Options:
        secure = [p for p in self.security_policies if p != "None"]
        if secure and not (self.certificate and self.private_key):
            raise ValueError(
                "security policies other than None need the server's certificate and private_key "
                "(generate them with openssl or your PKI)"
            )
        if secure and not self.trusted_clients:
            raise ValueError(
                "security policies other than None need trusted_clients: a directory of client certificates"
            )
        return self
