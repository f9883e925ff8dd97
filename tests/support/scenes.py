"""Setting a scene while a boot runs: wait for a state, then change the world.

For setting scenes only, never to assert speed (these machines are noisy).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator, List


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll until ``predicate`` holds, or fail saying what was awaited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")


@contextlib.contextmanager
def restored_after(proxy: Any, predicate: Callable[[], Any], timeout: float,
                   what: str) -> Iterator[None]:
    """While the block runs (a boot, say), bring the fault proxy's endpoint
    back once ``predicate`` holds; a wait that gives up fails the test after
    the block (the proxy is restored either way, so the block can finish)."""
    problems: List[BaseException] = []

    def restore_when_due() -> None:
        try:
            wait_for(predicate, timeout, what)
        except BaseException as exc:  # re-raised in the test's own thread
            problems.append(exc)
        proxy.restore()

    helper = threading.Thread(target=restore_when_due, daemon=True)
    helper.start()
    yield
    helper.join(10)
    if problems:
        raise problems[0]
