"""The node's console users and API tokens, in ``<data dir>/control/users.json``.

* Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended setting);
  the hash string carries its own parameters, so stronger settings later still verify old hashes and
  rehash them at the next login.
* API tokens are ``seam_<id>_<secret>`` with a 256-bit random secret. Only SHA-256 of the secret is
  stored: the secret is as strong as a key, so a slow hash would add nothing but latency per request.
  A token is scoped (a subset of its owner's permissions), may expire, and is revoked by id.
* TOTP secrets (RFC 6238) are stored as given to the authenticator app: a TOTP check needs the secret
  itself. The file is created with mode 0600 and written atomically (temporary file, rename), under an
  advisory lock, so ``seam user`` and a running ``seam run`` never lose each other's changes. The
  server re-reads the file when it changes on disk, so a removed user or revoked token stops working
  at the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from otseam.control.roles import Permission, Role

USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}\Z")
#: IEC 62443-3-3 SR 1.7 asks for configurable strength; length is what matters most (NIST SP 800-63B).
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOKEN = re.compile(r"^seam_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")

_hasher = PasswordHasher()


class UserError(ValueError):
    """A request about users that cannot be done; the message says why."""


@dataclass(slots=True)
class User:
    name: str
    person: str
    role: Role
    password: str
    created: float
    totp: str | None = None
    password_changed: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "person": self.person,
            "role": str(self.role),
            "totp": self.totp is not None,
            "created": self.created,
            "password_changed": self.password_changed or self.created,
        }


@dataclass(slots=True)
class Token:
    id: str
    user: str
    name: str
    digest: str
    scopes: list[Permission]
    created: float
    expires: float | None = None
    revoked: float | None = None
    last_used: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "scopes": [str(s) for s in self.scopes],
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
        }

    def active(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


@dataclass(slots=True)
class _Contents:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters (a phrase is fine)")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is longer than {MAX_PASSWORD} characters")
    if password.strip().lower() == username.lower():
        raise UserError("the password may not be the user name")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserStore:
    """Users and tokens of one node. Every method re-reads the file if it changed since the last read."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "control"
        self.path = self.directory / "users.json"
        self._lock_path = self.directory / ".users.lock"
        self._contents = _Contents()
        self._stamp: tuple[int, int, int] | None = None

    # --- file handling ------------------------------------------------------------------------------

    def _refresh(self) -> _Contents:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._contents, self._stamp = _Contents(), None
            return self._contents
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            self._contents = self._read()
            self._stamp = stamp
        return self._contents

    def _read(self) -> _Contents:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            users = {
                name: User(
                    name=name,
                    person=entry["person"],
                    role=Role(entry["role"]),
                    password=entry["password"],
                    created=float(entry["created"]),
                    totp=entry.get("totp"),
                    password_changed=float(entry.get("password_changed", 0.0)),
                )
                for name, entry in document["users"].items()
            }
            tokens = {
                token_id: Token(
                    id=token_id,
                    user=entry["user"],
                    name=entry["name"],
                    digest=entry["digest"],
                    scopes=[Permission(s) for s in entry["scopes"]],
                    created=float(entry["created"]),
                    expires=entry.get("expires"),
                    revoked=entry.get("revoked"),
                    last_used=entry.get("last_used"),
                )
                for token_id, entry in document["tokens"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(
                f"{self.path} cannot be read ({type(exc).__name__}: {exc}); restore it from a backup"
            ) from None
        return _Contents(users, tokens)

    def _write(self, contents: _Contents) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {
            "version": 1,
            "users": {name: {k: v for k, v in asdict(u).items() if k != "name"} for name, u in contents.users.items()},
            "tokens": {tid: {k: v for k, v in asdict(t).items() if k != "id"} for tid, t in contents.tokens.items()},
        }
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(document, indent=1, sort_keys=True, default=str).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self._stamp = None

    @contextlib.contextmanager
    def _change(self) -> Iterator[_Contents]:
        """Read, change and write the file under an exclusive lock."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._stamp = None
            contents = self._refresh()
            yield contents
            self._write(contents)
        finally:
            os.close(fd)

    # --- users --------------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return sorted(self._refresh().users.values(), key=lambda u: u.name)

    def get(self, name: str) -> User | None:
        return self._refresh().users.get(name)

    def add(self, name: str, person: str, role: Role, password: str, totp: str | None = None) -> User:
        if not USERNAME.match(name):
            raise UserError(
                f"{name!r} is not a user name: start with a lower-case letter, then letters, digits, '.', '_' or '-'"
            )
        check_password(password, name)
        now = time.time()
        with self._change() as contents:
            if name in contents.users:
                raise UserError(f"user {name} already exists (use 'seam user passwd' to change the password)")
            user = User(name, person, role, _hasher.hash(password), now, totp, now)
            contents.users[name] = user
        return user

    def remove(self, name: str) -> list[str]:
        """Remove the user and revoke their tokens; returns the ids of the tokens revoked."""
        now = time.time()
        with self._change() as contents:
            if contents.users.pop(name, None) is None:
                raise UserError(f"no user {name}")
            revoked = []
            for token in contents.tokens.values():
                if token.user == name and token.revoked is None:
                    token.revoked = now
                    revoked.append(token.id)
        return revoked

    def set_password(self, name: str, password: str) -> None:
        check_password(password, name)
        with self._change() as contents:
            user = contents.users.get(name)
            if user is None:
                raise UserError(f"no user {name}")
            user.password = _hasher.hash(password)
            user.password_changed = time.time()

    def set_totp(self, name: str, secret: str | None) -> None:
        with self._change() as contents:
            user = contents.users.get(name)
            if user is None:
                raise UserError(f"no user {name}")
            user.totp = secret

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is theirs. Costs one argon2 hash even for an unknown name, so the
        time taken does not tell which names exist."""
        user = self._refresh().users.get(name)
        stored = user.password if user is not None else _dummy_hash()
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        if _hasher.check_needs_rehash(user.password):
            with contextlib.suppress(UserError), self._change() as contents:
                if name in contents.users:
                    contents.users[name].password = _hasher.hash(password)
        return user

    # --- tokens -------------------------------------------------------------------------------------

    def tokens(self, user: str | None = None) -> list[Token]:
        found = self._refresh().tokens.values()
        return sorted((t for t in found if user is None or t.user == user), key=lambda t: t.created)

    def create_token(self, user: str, name: str, scopes: list[Permission], expires: float | None) -> tuple[Token, str]:
        """A new token; the returned secret is shown once and never stored."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self._change() as contents:
            if user not in contents.users:
                raise UserError(f"no user {user}")
            token = Token(token_id, user, name[:100], _digest(secret), sorted(set(scopes)), time.time(), expires)
            contents.tokens[token_id] = token
        return token, f"seam_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> Token:
        with self._change() as contents:
            token = contents.tokens.get(token_id)
            if token is None:
                raise UserError(f"no token {token_id}")
            if token.revoked is None:
                token.revoked = time.time()
        return token

    def check_token(self, text: str) -> Token | None:
        match = TOKEN.match(text)
        if match is None:
            return None
        token = self._refresh().tokens.get(match.group(1))
        if token is None or not hmac.compare_digest(token.digest, _digest(match.group(2))):
            return None
        if not token.active(time.time()) or token.user not in self._contents.users:
            return None
        return token


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash of nothing anyone knows, verified against for names that do not exist (made once)."""
    if not _DUMMY:
        _DUMMY.append(_hasher.hash(secrets.token_urlsafe(16)))
    return _DUMMY[0]
