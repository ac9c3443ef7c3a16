"""Seam: a defined, enforced interface between a plant's OT and its IT."""

import os

# numpy (used for small vector work, never for large linear algebra) starts OpenBLAS, which starts a
# thread per core that spins for a while after start-up. On a two-core gateway those threads took CPU
# from the diode's sender and receiver (seen in profiles as blas_thread_server). One thread is all Seam
# needs; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
