"""What the commands print beyond their results: one-line errors, JSON a
terminal cannot be tricked by, and a progress line while a send waits."""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any, Optional

from ..text import printable

# Characters a terminal acts on that JSON leaves raw with ensure_ascii=False.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def err(message: str) -> None:
    """One line on stderr, ``bosky: `` first, every character printable."""
    print(f"bosky: {printable(message)}", file=sys.stderr)


def safe_json(data: Any) -> str:
    """Indented JSON with non-ASCII text kept readable but every character a
    terminal would act on escaped (still valid JSON, the same values)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Progress:
    """While a send waits (retrying, or for credentials), one line on a
    terminal says so and counts the seconds; nothing when stderr is not a
    terminal (scripts, cloud-init's log), and the line is wiped when done."""

    AFTER = 2.0  # a send that answers within this long shows nothing

    def __init__(self, region: str, budget: float) -> None:
        self.region, self.budget = region, budget
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown = False

    def __enter__(self) -> Progress:
        if sys.stderr is not None and sys.stderr.isatty():
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def _tick(self) -> None:
        waited = self.AFTER
        while not self._stop.wait(1.0 if self._shown else self.AFTER):
            self._shown = True
            sys.stderr.write(f"\rbosky: no answer yet from AWS in {self.region}, retrying "
                             f"({waited:.0f}s of {self.budget:.0f}s; Ctrl-C to stop)")
            sys.stderr.flush()
            waited += 1.0
