"""The journal: the durable, bounded log every sample and event passes through, with a cursor per sink.

``Journal.open(path)`` implements :class:`otseam.core.plugins.JournalWriter`; ``journal.reader(name)``
returns a :class:`Cursor` implementing :class:`otseam.core.plugins.JournalReader`. See journal.py for the
storage choice, the durability guarantees and the overflow policy.
"""

from otseam.journal.cursor import Cursor
from otseam.journal.dedup import Deduplicator
from otseam.journal.journal import CursorMetrics, Journal, JournalMetrics
from otseam.journal.state import JournalError

__all__ = ["Cursor", "CursorMetrics", "Deduplicator", "Journal", "JournalError", "JournalMetrics"]
