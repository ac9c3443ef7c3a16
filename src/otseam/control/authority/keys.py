"""Ed25519 keys of the people who request, approve and review: made once, enrolled on each node.

A person's private key lives in a file only they can read (mode 0600; a key file that others can read
is refused, as ssh does). It is never passed on a command line. The node keeps a keyring of public
keys by person, each listed by its fingerprint, ``SHA256:`` and the unpadded base64 of the SHA-256 of
the raw 32-byte key (the form ``ssh-keygen -l`` prints). How a signature is made and checked (a
purpose label and a SHA-256, never the raw document) is ``otseam.audit.signing``, re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from otseam.audit.files import atomic_write, locked
from otseam.audit.signing import (
    PURPOSE_APPROVAL as PURPOSE_APPROVAL,
)
from otseam.audit.signing import (
    PURPOSE_BREAK_GLASS as PURPOSE_BREAK_GLASS,
)
from otseam.audit.signing import (
    PURPOSE_BUNDLE as PURPOSE_BUNDLE,
)
from otseam.audit.signing import (
    PURPOSE_CHECKPOINT as PURPOSE_CHECKPOINT,
)
from otseam.audit.signing import (
    PURPOSE_REJECTION as PURPOSE_REJECTION,
)
from otseam.audit.signing import (
    PURPOSE_REQUEST as PURPOSE_REQUEST,
)
from otseam.audit.signing import (
    PURPOSE_REVIEW as PURPOSE_REVIEW,
)
from otseam.audit.signing import (
    fingerprint as fingerprint,
)
from otseam.audit.signing import (
    message as message,
)
from otseam.audit.signing import (
    sign as sign,
)
from otseam.audit.signing import (
    verify as verify,
)

PUBLIC_PREFIX = "seam-ed25519"


class KeyProblem(ValueError):
    """A key file that cannot be used, or a person without an enrolled key."""


def public_text(public: Ed25519PublicKey, person: str) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{PUBLIC_PREFIX} {base64.b64encode(raw).decode()} {person}\n"


def parse_public(text: str) -> tuple[Ed25519PublicKey, str]:
    """A public key file's key and the person it names."""
    parts = text.strip().split()
    if len(parts) != 3 or parts[0] != PUBLIC_PREFIX:
        raise KeyProblem(f"not a Seam public key: expected '{PUBLIC_PREFIX} <base64 key> <person>' on one line")
    try:
        raw = base64.b64decode(parts[1], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise KeyProblem("the public key is not 32 bytes of base64") from None
    return public, parts[2]


def generate(person: str, private_path: Path) -> tuple[Path, str]:
    """A new key pair: the private key at ``private_path`` (0600, never overwritten) and the public key
    beside it with ``.pub`` appended. Returns the public key's path and the fingerprint."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyProblem(f"{private_path} already exists; a key is never overwritten (move it away first)") from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())
    public_path = Path(str(private_path) + ".pub")
    public_path.write_text(public_text(private.public_key(), person), encoding="utf-8")
    return public_path, fingerprint(private.public_key())


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """A private key file, refused when group or others may read it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"cannot read the key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyProblem(f"{path} can be read by others (mode {stat.S_IMODE(mode):04o}); run 'chmod 600 {path}'")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyProblem(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class Enrolled:
    person: str
    public_key: str  # base64 of the raw 32 bytes
    fingerprint: str
    enrolled_at: int  # ms since the epoch
    revoked_at: int | None = None

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))


class Keyring:
    """The public keys enrolled on this node (``<authority dir>/keyring.json``)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "keyring.json"

    def entries(self) -> list[Enrolled]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise KeyProblem(f"the keyring {self.path} cannot be read: {exc}") from None
        return [Enrolled(**item) for item in raw.get("keys", [])]

    def enroll(self, public: Ed25519PublicKey, person: str, now_ms: int | None = None) -> Enrolled:
        self.directory.mkdir(parents=True, exist_ok=True)
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        entry = Enrolled(
            person,
            base64.b64encode(raw).decode(),
            fingerprint(public),
            now_ms if now_ms is not None else int(time.time() * 1000),
        )
        with locked(self.directory / "keyring.lock"):
            entries = self.entries()
            for other in entries:
                if other.fingerprint == entry.fingerprint and other.revoked_at is None:
                    if other.person != person:
                        raise KeyProblem(f"this key is already enrolled for {other.person}; one key, one person")
                    return other
            entries.append(entry)
            self._save(entries)
        return entry

    def revoke(self, fingerprint_: str, now_ms: int) -> Enrolled:
        with locked(self.directory / "keyring.lock"):
            entries = self.entries()
            for i, entry in enumerate(entries):
                if entry.fingerprint == fingerprint_ and entry.revoked_at is None:
                    entries[i] = revoked = Enrolled(
                        entry.person, entry.public_key, entry.fingerprint, entry.enrolled_at, now_ms
                    )
                    self._save(entries)
                    return revoked
        raise KeyProblem(f"no enrolled key has fingerprint {fingerprint_}")

    def _save(self, entries: list[Enrolled]) -> None:
        atomic_write(self.path, json.dumps({"keys": [asdict(e) for e in entries]}, indent=2).encode())

    def active(self, person: str) -> list[Enrolled]:
        return [e for e in self.entries() if e.person == person and e.revoked_at is None]

    def find(self, person: str, fingerprint_: str) -> Enrolled | None:
        return next((e for e in self.active(person) if e.fingerprint == fingerprint_), None)

    def check(self, person: str, fingerprint_: str, purpose: str, digest_hex: str, signature: str) -> str | None:
        """None when ``signature`` is ``person``'s, by an active enrolled key; else the reason it is not."""
        entry = self.find(person, fingerprint_)
        if entry is None:
            return f"{person} has no active key with fingerprint {fingerprint_} enrolled on this node"
        if not verify(entry.key(), purpose, digest_hex, signature):
            return f"the signature of {person} ({fingerprint_}) does not match this document"
        return None
