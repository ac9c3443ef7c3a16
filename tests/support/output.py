"""A running process's output, line by line as it comes, so that a test can wait for a line."""

from __future__ import annotations

import threading
from typing import IO


class OutputLines:
    """Reads ``stream`` to its end in a thread; :attr:`lines` grows as the process writes."""

    def __init__(self, stream: IO[bytes] | IO[str] | None) -> None:
        assert stream is not None, "the process's output must be a pipe"
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.decode(errors="replace") if isinstance(line, bytes) else line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def so_far(self) -> str:
        return "".join(list(self.lines))

    def text(self, timeout: float = 30.0) -> str:
        """Everything, once the stream has ended (call after the process exited)."""
        self._thread.join(timeout)
        return "".join(self.lines)
