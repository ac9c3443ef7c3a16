"""The node's tamper-evident audit log: a hash chain of records with Ed25519-signed checkpoints.

Below the plugins and the control plane, so that every part that refuses or performs a write (the
authority's executor, the read-only replica and servers, the Sparkplug edge node, the console) writes
into the same chain. See ``log.py`` for the file format and docs/security.md for what it guarantees.
"""

from otseam.audit.log import AuditLog, AuditUnavailable, authority_dir

__all__ = ["AuditLog", "AuditUnavailable", "authority_dir"]
