"""The one compiled part of Seam: the diode's hot paths (src/otseam/diode/speedups/, one module).

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
            sources=[
                f"src/otseam/diode/speedups/{name}.c"
                for name in ("_speedups", "mac", "sha256x16", "coder", "columns", "mmsg")
            ],
            depends=["src/otseam/diode/speedups/speedups.h"],
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
                # Only PyInit__speedups is exported; the files' shared functions stay inside the module.
                "-fvisibility=hidden",
            ],
        )
    ]
)
