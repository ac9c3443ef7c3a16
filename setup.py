"""The one compiled part of Seam: the diode's per-datagram hot path (src/otseam/diode/_speedups.c).

Everything else is declared in pyproject.toml. Building needs a C compiler, the Python headers and
OpenSSL's headers (Debian: gcc, python3-dev, libssl-dev); `make test` installs what is missing. The
module is optional: where it cannot be built, Seam installs anyway and the diode runs its pure-Python
reference path (slower; a test fails on Linux so that this never goes unnoticed in CI).
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otseam.diode._speedups",
            sources=["src/otseam/diode/_speedups.c"],
            # dl: the sender loads ISA-L (bundled with pyeclib) by path; in the C library itself since
            # glibc 2.34, a separate library before.
            libraries=["crypto", "dl"] if sys.platform.startswith("linux") else ["crypto"],
            optional=True,
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Werror=implicit-function-declaration",
            ],
        )
    ]
)
