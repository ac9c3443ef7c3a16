"""The diode tests' process set-up.

Under LeakSanitizer (``make sanitize``), cryptography's OpenSSL bindings are imported with leak
detection paused. cffi's module initialisation keeps an object for the life of the process that
LeakSanitizer finds no pointer to; like the third-party caches in ``native/lsan.supp`` it is not
Seam's, but a suppression cannot name it (its stack ends in libpython, which has no frame pointers).
Outside a sanitizer build this only imports the module early.
"""

from __future__ import annotations

import ctypes


def _import_cryptography_unwatched() -> None:
    process = ctypes.CDLL(None)
    disable = getattr(process, "__lsan_disable", None)
    enable = getattr(process, "__lsan_enable", None)
    if disable is not None and enable is not None:
        disable()
    try:
        import cryptography.hazmat.bindings._rust  # noqa: F401
        from cryptography.hazmat.primitives.ciphers import aead  # noqa: F401
    finally:
        if disable is not None and enable is not None:
            enable()


_import_cryptography_unwatched()
