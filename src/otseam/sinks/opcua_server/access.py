"""Read-only, twice over, and who may log in.

First: every variable's AccessLevel is CurrentRead (and HistoryRead with a historian), never
CurrentWrite. Second, independent of the first: every request is checked against an allow-list of the
services that only read. Write, Call, AddNodes, AddReferences, DeleteNodes, DeleteReferences,
HistoryUpdate, and anything not on the list (deny by default, including services a later asyncua
adds), are refused with Bad_UserAccessDenied before the server looks at them, and each refusal is
reported to ``on_refused`` (the sink makes it a record of the node's hash-chained audit log, which
the journal carries on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole

from otseam.sinks.opcua_server._ua import ua

log = logging.getLogger(__name__)

_ALLOWED_NAMES = (
    "ReadRequest",
    "BrowseRequest",
    "BrowseNextRequest",
    "TranslateBrowsePathsToNodeIdsRequest",
    "RegisterNodesRequest",
    "UnregisterNodesRequest",
    "HistoryReadRequest",
    "CreateSubscriptionRequest",
    "ModifySubscriptionRequest",
    "SetPublishingModeRequest",
    "PublishRequest",
    "RepublishRequest",
    "DeleteSubscriptionsRequest",
    "TransferSubscriptionsRequest",
    "CreateMonitoredItemsRequest",
    "ModifyMonitoredItemsRequest",
    "SetMonitoringModeRequest",
    "SetTriggeringRequest",
    "DeleteMonitoredItemsRequest",
    "CloseSessionRequest",
    "CancelRequest",
)
#: Binary encoding ids of the read-type service requests.
ALLOWED: frozenset[ua.NodeId] = frozenset(
    ua.NodeId(getattr(ua.ObjectIds, f"{name}_Encoding_DefaultBinary")) for name in _ALLOWED_NAMES
)
#: A readable name for each request type a client may try (for the audit trail).
_NAMES: dict[int, str] = {
    value: name.removesuffix("_Encoding_DefaultBinary")
    for name, value in vars(ua.ObjectIds).items()
    if isinstance(value, int) and name.endswith("Request_Encoding_DefaultBinary")
}


def service_name(type_id: ua.NodeId) -> str:
    name = _NAMES.get(type_id.Identifier) if isinstance(type_id.Identifier, int) else None
    return (name or str(type_id)).removesuffix("Request")


@dataclass(frozen=True, slots=True)
class Refusal:
    service: str
    user: str
    role: str
    #: Node ids the request named, where it names any (Write, Call, HistoryUpdate, DeleteNodes...).
    targets: tuple[str, ...]


class ReadOnlyRuleset(PermissionRuleset):
    """asyncua calls ``check_validity`` for every request of an activated session."""

    def __init__(self, on_refused: Callable[[Refusal], None]) -> None:
        self._on_refused = on_refused

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if action_type_id in ALLOWED:
            return True
        try:
            refusal = Refusal(
                service_name(action_type_id),
                str(getattr(user, "name", None) or "anonymous"),
                getattr(getattr(user, "role", None), "name", "?"),
                _targets(action_type_id, body),
            )
            self._on_refused(refusal)
        except Exception as exc:  # the refusal stands even if its record cannot be written
            log.error("could not record a refused OPC UA request: %s", exc)
        return False


def _targets(type_id: ua.NodeId, body: Any) -> tuple[str, ...]:
    """The node ids a refused request named, decoded only for the common write-type services."""
    from asyncua.ua.ua_binary import struct_from_binary

    kinds: dict[int, tuple[type, str, str]] = {
        ua.ObjectIds.WriteRequest_Encoding_DefaultBinary: (ua.WriteParameters, "NodesToWrite", "NodeId"),
        ua.ObjectIds.CallRequest_Encoding_DefaultBinary: (ua.CallParameters, "MethodsToCall", "MethodId"),
        ua.ObjectIds.DeleteNodesRequest_Encoding_DefaultBinary: (ua.DeleteNodesParameters, "NodesToDelete", "NodeId"),
    }
    kind = kinds.get(type_id.Identifier) if isinstance(type_id.Identifier, int) else None
    if kind is None:
        return ()
    cls, field, attribute = kind
    try:
        params: Any = struct_from_binary(cls, body.copy() if hasattr(body, "copy") else body)
        return tuple(getattr(item, attribute).to_string() for item in getattr(params, field))[:20]
    except Exception:  # a malformed body: the refusal is recorded without targets
        return ()


class UserDirectory(Protocol):
    """Who may log in: a users file today, the console's users once the runtime passes them."""

    def verify(self, username: str, password: str) -> bool: ...


class UsersFile:
    """``user:argon2-hash`` lines (``#`` comments). Read at start; a bad line is an error naming it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hasher = PasswordHasher()
        self._users: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, sep, digest = text.partition(":")
            if not sep or not name or not digest.startswith("$argon2"):
                raise ValueError(f"{path}:{number}: expected user:$argon2id$... (an argon2 hash, never a password)")
            self._users[name] = digest

    def verify(self, username: str, password: str) -> bool:
        digest = self._users.get(username)
        if digest is None:
            # The same work for an unknown name, so timing does not tell which names exist.
            digest = _DUMMY
        try:
            ok = self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and username in self._users


_DUMMY = PasswordHasher().hash("not a password of anyone")


class LoginManager:
    """asyncua's user manager: anonymous only if allowed, otherwise a user name and password."""

    def __init__(self, directory: UserDirectory | None, anonymous: bool, on_refused: Callable[[str], None]) -> None:
        self.directory = directory
        self.anonymous = anonymous
        self._on_refused = on_refused

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None and not certificate:  # (None security passes an empty certificate)
            if self.anonymous:
                return User(role=UserRole.User, name="anonymous")
            self._on_refused("anonymous")
            return None
        if username is not None and self.directory is not None and self.directory.verify(username, password or ""):
            return User(role=UserRole.User, name=username)
        self._on_refused(username or "certificate user")
        return None
