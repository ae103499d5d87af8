"""A remote store for journal tests: the embedded store behind a switch, as an MLflow server that goes
down and comes back would be (``flaky:///PATH.db``).

It is down while ``PATH.db.down`` exists (any process can flip it): every call then raises the
``StoreError`` an unreachable server gives, after ``PATH.db.down``'s content in seconds (a hanging
server). Each process registers the scheme with :func:`register` before opening it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrack.errors import StoreError
from orchestrack.stores import register_store
from orchestrack.stores.sqlite import SQLiteStore


class FlakyStore:
    """The embedded store at ``flaky:///PATH.db``, down while ``PATH.db.down`` exists."""

    remote = True

    def __init__(self, uri: str, busy_timeout_s: float = 30.0) -> None:
        self.uri = uri
        self.path = Path(uri.removeprefix("flaky://"))
        self.inner = SQLiteStore(f"sqlite:///{self.path}", busy_timeout_s=busy_timeout_s)
        self.calls = 0

    @property
    def switch(self) -> Path:
        return self.path.with_name(self.path.name + ".down")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method) or name.startswith("_"):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.switch.exists():
                hang = self.switch.read_text().strip()
                if hang:
                    time.sleep(float(hang))
                raise StoreError(f"cannot reach the store at {self.uri} ({name}): ConnectionError")
            return method(*args, **kwargs)

        return call


def register() -> None:
    """Make ``flaky://`` URIs open a :class:`FlakyStore` in this process."""
    register_store("flaky", FlakyStore)


def set_down(path: Path, down: bool, *, hang_s: float = 0.0) -> None:
    """Take the flaky store at ``path`` down (each call hanging ``hang_s`` first) or bring it back."""
    switch = path.with_name(path.name + ".down")
    if down:
        switch.write_text(str(hang_s) if hang_s else "")
    else:
        switch.unlink(missing_ok=True)
