"""Seam: a defined, enforced interface between a plant's OT and its IT."""

__version__ = "0.1.0"
