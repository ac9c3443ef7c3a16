"""The one compiled part of Seam: the diode's per-datagram hot path (src/otseam/diode/_speedups.c).

Everything else is declared in pyproject.toml. Building needs a C compiler, the Python headers and
OpenSSL's headers (Debian: gcc, python3-dev, libssl-dev); `make test` installs what is missing.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otseam.diode._speedups",
            sources=["src/otseam/diode/_speedups.c"],
            libraries=["crypto"],
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
