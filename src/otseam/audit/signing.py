"""Purpose-labelled Ed25519 signatures, the one form in which Seam signs anything.

What is signed is never the raw document: it is a purpose label followed by the document's SHA-256, so
a signature given for a command request can never be presented as the approval of a contract bundle or
a checkpoint of the audit log. Fingerprints are ``SHA256:`` and the unpadded base64 of the SHA-256 of
the raw 32-byte public key (the form ``ssh-keygen -l`` prints).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: The purpose labels (domain separation) of everything Seam signs.
PURPOSE_REQUEST = "otseam command request v1"
PURPOSE_APPROVAL = "otseam command approval v1"
PURPOSE_REJECTION = "otseam command rejection v1"
PURPOSE_BREAK_GLASS = "otseam break-glass v1"
PURPOSE_REVIEW = "otseam break-glass review v1"
PURPOSE_BUNDLE = "otseam contract bundle v1"
PURPOSE_CHECKPOINT = "otseam audit checkpoint v1"


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def message(purpose: str, digest_hex: str) -> bytes:
    return f"{purpose}\n{digest_hex}".encode()


def sign(private: Ed25519PrivateKey, purpose: str, digest_hex: str) -> str:
    """The base64 Ed25519 signature of ``purpose`` and ``digest_hex``."""
    return base64.b64encode(private.sign(message(purpose, digest_hex))).decode()


def verify(public: Ed25519PublicKey, purpose: str, digest_hex: str, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public.verify(signature, message(purpose, digest_hex))
    except InvalidSignature:
        return False
    return True
