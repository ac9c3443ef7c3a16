"""The one compiled part of Seam: the diode's hot paths (src/otseam/diode/speedups/, one module).

Everything else is declared in pyproject.toml. Building needs a C compiler, the Python headers,
OpenSSL's headers and Intel ISA-L's (Debian: gcc, python3-dev, libssl-dev, libisal-dev); `make test`
installs what is missing. The module is optional for Seam as a whole: where it cannot be built, Seam
installs anyway, but the diode, whose Reed-Solomon is ISA-L called from this module, refuses to start
and says why (a test fails on Linux so that this never goes unnoticed in CI).

SEAM_SANITIZE=1 builds it with AddressSanitizer and UndefinedBehaviorSanitizer (see the Makefile's
`sanitize` target).
"""

import os

from setuptools import Extension, setup

SANITIZE = (
    ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
    if os.environ.get("SEAM_SANITIZE") == "1"
    else []
)

setup(
    ext_modules=[
        Extension(
            "otseam.diode._speedups",
            sources=[
                f"src/otseam/diode/speedups/{name}.c"
                for name in ("_speedups", "mac", "coder", "columns", "mmsg")
            ],
            depends=["src/otseam/diode/speedups/speedups.h"],
            libraries=["crypto", "isal"],
            optional=True,
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Werror=implicit-function-declaration",
                # Only PyInit__speedups is exported; the files' shared functions stay inside the module.
                "-fvisibility=hidden",
                *SANITIZE,
            ],
            extra_link_args=SANITIZE,
        )
    ]
)
