"""What the commands print beyond their results: one-line errors and a
progress line while a send waits (JSON a terminal cannot be tricked by is
text.safe_json)."""

from __future__ import annotations

import sys
import threading
from typing import Optional

from ..text import printable


def err(message: str) -> None:
    """One line on stderr, ``bosky: `` first, every character printable (a
    progress line on the terminal is wiped first, never written over)."""
    if Progress.active is not None:
        Progress.active.stop()
    print(f"bosky: {printable(message)}", file=sys.stderr)


class Progress:
    """While a send waits (retrying, or for credentials), one line on a
    terminal says so and counts the seconds; nothing when stderr is not a
    terminal (scripts, cloud-init's log), and the line is wiped when done."""

    AFTER = 2.0  # a send that answers within this long shows nothing
    active: Optional[Progress] = None  # the one on screen, for err() to wipe

    def __init__(self, region: str, budget: float) -> None:
        self.region, self.budget = region, budget
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown = False

    def __enter__(self) -> Progress:
        if sys.stderr is not None and sys.stderr.isatty():
            Progress.active = self
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the ticking and wipe the line (once; later calls do nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._shown:
            self._shown = False
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        if Progress.active is self:
            Progress.active = None

    def _tick(self) -> None:
        waited = self.AFTER
        while not self._stop.wait(1.0 if self._shown else self.AFTER):
            self._shown = True
            sys.stderr.write(f"\rbosky: no answer yet from AWS in {self.region}, retrying "
                             f"({waited:.0f}s of {self.budget:.0f}s; Ctrl-C to stop)")
            sys.stderr.flush()
            waited += 1.0
