"""Settings shared by both ends of a diode, the pre-shared key, and the fingerprint that ties them.

The two ends cannot negotiate anything (nothing ever travels back), so they must be configured alike.
Beacons carry a fingerprint of the key and of these settings; a receiver that sees a different one
reports it and decodes nothing from that sender.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otseam.contract.units import parse_duration
from otseam.diode import wire
from otseam.diode.fec import FecError, FecSettings

MIN_KEY_BYTES = 16
#: UDP payload of a 1,500-byte Ethernet frame: 1500 - 20 (IPv4) - 8 (UDP).
DEFAULT_DATAGRAM = 1472


class DiodeConfigError(ValueError):
    """A setting or the key file is unusable; the message says what to change."""


def load_key(path: str | os.PathLike[str]) -> bytes:
    """The pre-shared key: the file's bytes, surrounding whitespace removed. Never logged."""
    try:
        key = Path(path).read_bytes().strip()
    except FileNotFoundError:
        raise DiodeConfigError(f"key file {path} does not exist: create one with 'seam diode keygen {path}'") from None
    except OSError as exc:
        raise DiodeConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise DiodeConfigError(
            f"key file {path} holds {len(key)} bytes, fewer than {MIN_KEY_BYTES}: "
            f"create a random one with 'seam diode keygen {path}'"
        )
    return key


def write_new_key(path: str | os.PathLike[str]) -> None:
    """32 random bytes, hex-encoded, readable by the owner only. Refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")


def _parse_rate_bits(value: Any) -> float:
    """'800Mbit/s', '1Gbit/s', '50MB/s' or a number of bytes per second → bytes per second."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if not isinstance(value, str):
        raise DiodeConfigError(f"rate {value!r}: write it like '800Mbit/s' or '50MB/s'")
    text = value.strip().replace(" ", "")
    units = {
        "kbit/s": 1e3 / 8,
        "Mbit/s": 1e6 / 8,
        "Gbit/s": 1e9 / 8,
        "B/s": 1.0,
        "KB/s": 1e3,
        "MB/s": 1e6,
        "GB/s": 1e9,
    }
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                number = float(text[: -len(unit)])
            except ValueError:
                break
            if number > 0:
                return number * factor
    raise DiodeConfigError(f"rate {value!r}: write it like '800Mbit/s' or '50MB/s'")


@dataclass(frozen=True, slots=True)
class DiodeSettings:
    fec: FecSettings = field(default_factory=FecSettings)
    #: Bytes per second on the wire, headers and parity included; keep it below the link rate.
    rate: float = 100e6 / 8
    beacon_interval: float = 1.0
    snapshot_interval: float = 10.0
    #: Receiver: how long an incomplete block may wait for its missing fragments.
    block_timeout: float = 0.5
    #: Receiver: how long an incomplete block may wait once the sender is known to have sent all of it
    #: (a later block has begun to arrive, or a beacon counted it). The sender sends blocks whole and in
    #: order, so after that only a link that reorders can still deliver a missing fragment; the receiver
    #: widens this on its own (up to block_timeout) if a fragment ever arrives after its block was given up.
    reorder_window: float = 0.02
    datagram_size: int = DEFAULT_DATAGRAM
    #: Let the kernel cut and join runs of equal datagrams (UDP segmentation offload on the sender,
    #: receive coalescing on the receiver, Linux only). The datagrams on a link are the same either way,
    #: so the two sides need not agree on it; off, every datagram makes its own trip through the stack.
    offload: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> DiodeSettings:
        """Build from a contract ``options`` mapping (or command-line values); unknown keys are errors."""
        known = {
            "k",
            "overhead",
            "min_parity",
            "datagram_size",
            "rate",
            "beacon_interval",
            "snapshot_interval",
            "block_timeout",
            "reorder_window",
            "offload",
        }
        unknown = sorted(set(options) - known - {"key_file", "target", "bind", "listen"})
        if unknown:
            raise DiodeConfigError(f"unknown diode option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        datagram = int(options.get("datagram_size", DEFAULT_DATAGRAM))
        if not 256 <= datagram <= wire.MAX_DATAGRAM:
            raise DiodeConfigError(f"datagram_size must be between 256 and {wire.MAX_DATAGRAM}, got {datagram}")
        try:
            fec = FecSettings(
                max_k=int(options.get("k", 64)),
                overhead=float(options.get("overhead", 0.125)),
                min_parity=int(options.get("min_parity", 3)),
                fragment_size=datagram - wire.OVERHEAD,
            )
            durations = {
                name: parse_duration(options[name]) if name in options else default
                for name, default in (
                    ("beacon_interval", 1.0),
                    ("snapshot_interval", 10.0),
                    ("block_timeout", 0.5),
                    ("reorder_window", 0.02),
                )
            }
        except (FecError, ValueError) as exc:
            raise DiodeConfigError(str(exc)) from None
        if durations["beacon_interval"] <= 0 or durations["block_timeout"] <= 0:
            raise DiodeConfigError("beacon_interval and block_timeout must be positive")
        if not 0 < durations["reorder_window"] <= durations["block_timeout"]:
            raise DiodeConfigError(
                f"reorder_window must be positive and at most block_timeout ({durations['block_timeout']:g}s), "
                f"got {durations['reorder_window']:g}s"
            )
        rate = _parse_rate_bits(options.get("rate", "100Mbit/s"))
        if rate < datagram * 10:
            raise DiodeConfigError(f"rate {options.get('rate')!r} is too low to carry even ten datagrams a second")
        offload = options.get("offload", True)
        if not isinstance(offload, bool):
            raise DiodeConfigError(f"offload must be true or false, got {offload!r}")
        return cls(fec=fec, rate=rate, datagram_size=datagram, offload=offload, **durations)

    def fingerprint(self, key: bytes) -> bytes:
        """Only what the receiver must agree with: the key and the FEC layout (not the rate)."""
        return wire.fingerprint(key, self.fec.describe())
