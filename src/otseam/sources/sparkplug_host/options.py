"""The options of a ``sparkplug_host`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, model_validator

from otseam.contract.option_types import ExistingFile, PluginOptions


class Options(PluginOptions):
    """A Sparkplug B primary host application storing what edge nodes publish. See README.md."""

    #: The broker(s), tried in order: "mqtt://host:1883", "mqtts://host:8883".
    brokers: list[str] = Field(min_length=1)
    #: The host application's id: its STATE topic is spBv1.0/STATE/<host_id>.
    host_id: Annotated[str, Field(min_length=1, pattern=r"^[^/+#]+$")]
    mqtt_version: Literal["5", "3.1.1"] = "5"
    #: SQLite file (relative to the node's data directory); default <data_dir>/<source id>.db.
    db: str | None = None
    #: A file holding a PostgreSQL DSN (never the DSN itself: it carries a password).
    dsn_file: ExistingFile | None = None
    #: Or the name of an environment variable of the node's process that holds it.
    dsn_env: str | None = None
    #: Share the subscription among several hosts (MQTT 5 shared subscription group).
    share_group: Annotated[str, Field(pattern=r"^[^/+#]+$")] | None = None
    #: 0 (the default): a clean session each time, as Sparkplug 3.0 asks of a host.
    session_expiry: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    #: Seconds a message that arrived ahead of its seq waits for the missing ones before the host counts
    #: a gap and asks for a rebirth (Sparkplug 3.0's Reorder Timeout); 0 asks at once.
    reorder_timeout: Annotated[float, Field(ge=0, le=60)] = 2.0
    tls: dict[str, Any] | None = None
    username: str | None = None
    password_file: ExistingFile | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _connection(self, info: ValidationInfo) -> Options:
        # The connection part is checked by the model every MQTT plugin shares, as the source reads it.
        from otseam.sinks.mqtt_common.options import MqttOptions

        try:
            MqttOptions.model_validate(self.mqtt_options(), context=info.context)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None
        return self

    def mqtt_options(self) -> dict[str, Any]:
        """The connection part, as the MQTT settings parser shared with the Sparkplug sink takes it."""
        keys = ("brokers", "mqtt_version", "tls", "username", "password_file", "password_env")
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
