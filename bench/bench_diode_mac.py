"""What authenticating one diode datagram costs, for each standard construction from a vetted library.

The diode seals every datagram (85,000 a second at a gigabit) and the receiver checks every one, so
the MAC is on both hot paths. Candidates, all computed by OpenSSL or CPython's bundled BLAKE2, never
by this project:

* HMAC-SHA256 (OpenSSL, keyed once, the context copied per datagram), truncated to 16 bytes: what
  wire version 2 used;
* AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 as MACs (the datagram as associated data, nothing
  encrypted), from ``cryptography`` (OpenSSL); AES-256-GCM is what the diode uses since wire version 3,
  and the last line is its C module's figure (OpenSSL's EVP interface, the session's keyed context
  reused, sealing a whole block with ``pack_block``, header writing and copy included);
* keyed BLAKE2s and BLAKE2b, 16-byte digests (hashlib).

Each figure is microseconds per datagram of the given size, the best of five runs, with Python's call
overhead included for all but the C module's line (which is what the diode actually pays).

    .venv/bin/python bench/bench_diode_mac.py
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from otseam.diode import wire

KEY = os.urandom(32)


def cpu() -> tuple[str, str]:
    """The CPU model and the flags that matter to these constructions."""
    model, flags = platform.processor() or "unknown", ""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                wanted = ("sha_ni", "aes", "pclmulqdq", "avx2", "avx512f", "vaes", "vpclmulqdq")
                present = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in wanted if f in present)
                break
    return model, flags


def best(run: Callable[[], None], count: int) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="datagrams per run")
    parser.add_argument("--sizes", default="1430,82", help="datagram sizes, MAC excluded")
    args = parser.parse_args()
    model, flags = cpu()
    print(f"CPU: {model}; flags: {flags or 'none of sha_ni aes pclmulqdq avx2 avx512f'}")
    speedups = wire.speedups(True)
    assert speedups is not None
    for size in (int(s) for s in args.sizes.split(",")):
        measure(speedups, size, args.count)


def measure(speedups: ModuleType, size: int, count: int) -> None:
    data = os.urandom(size)
    keyed = hmac.new(KEY, digestmod="sha256")
    aes, aes256, chacha = AESGCM(KEY[:16]), AESGCM(KEY), ChaCha20Poly1305(KEY)
    nonce = os.urandom(12)

    def hmac_sha256() -> None:
        for _ in range(count):
            mac = keyed.copy()
            mac.update(data)
            mac.digest()

    def aes_gcm() -> None:
        for _ in range(count):
            aes.encrypt(nonce, b"", data)

    def aes256_gcm() -> None:
        for _ in range(count):
            aes256.encrypt(nonce, b"", data)

    def chacha_poly() -> None:
        for _ in range(count):
            chacha.encrypt(nonce, b"", data)

    def blake2s() -> None:
        for _ in range(count):
            hashlib.blake2s(data, key=KEY, digest_size=16).digest()

    def blake2b() -> None:
        for _ in range(count):
            hashlib.blake2b(data, key=KEY, digest_size=16).digest()

    def call_only() -> None:
        for _ in range(count):
            len(data)

    sealer = speedups.Mac(KEY)
    k = 64
    fragment = size - wire.HEADER_SIZE
    slot = size + wire.MAC_SIZE
    fragments = [os.urandom(fragment)] * (k + 8) if fragment > 0 else []
    buffer = bytearray(slot * (k + 8))
    blocks = max(1, count // (k + 8))

    def compiled() -> None:
        for _ in range(blocks):
            sealer.pack_block(buffer, slot, 0, k, 8, 1, 2, fragments)

    print(f"\n{size}-byte datagrams (us per datagram, best of 5 x {count}):")
    baseline = best(call_only, count)
    rows = [
        ("HMAC-SHA256, OpenSSL (Python hmac, context copied)", best(hmac_sha256, count)),
        ("AES-128-GCM tag (cryptography)", best(aes_gcm, count)),
        ("AES-256-GCM tag (cryptography)", best(aes256_gcm, count)),
        ("ChaCha20-Poly1305 tag (cryptography)", best(chacha_poly, count)),
        ("keyed BLAKE2s-128 (hashlib)", best(blake2s, count)),
        ("keyed BLAKE2b-128 (hashlib)", best(blake2b, count)),
    ]
    for name, value in rows:
        print(f"  {name:<55} {value:6.2f}  ({value - baseline:5.2f} without the loop's own cost)")
    if fragments:
        print(f"  {'AES-256-GCM tag, the C module (EVP, pack_block)':<55} {best(compiled, blocks * (k + 8)):6.2f}")


if __name__ == "__main__":
    main()
