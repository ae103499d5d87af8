"""click's ``CliRunner`` as click 8.2 has it, on every click orchestrack supports (8.1 and later).

From click 8.2 a result's ``output`` holds what the command wrote to stdout and stderr, and
``stderr`` holds stderr alone. Click 8.1 either mixes both streams (and then has no ``stderr``) or
keeps them apart (and then ``output`` is stdout only): here it keeps them apart and ``output`` joins them.
"""

from __future__ import annotations

import inspect
from typing import Any

import click.testing
from click.testing import Result

__all__ = ["CliRunner", "Result"]

if "mix_stderr" in inspect.signature(click.testing.CliRunner.__init__).parameters:  # click 8.1

    class _BothStreams(Result):
        @property
        def output(self) -> str:
            return self.stdout + self.stderr

    class CliRunner(click.testing.CliRunner):
        """``CliRunner`` with click 8.2's ``output`` and ``stderr``."""

        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("mix_stderr", False)
            super().__init__(**kwargs)

        def invoke(self, *args: Any, **kwargs: Any) -> Result:
            result = super().invoke(*args, **kwargs)
            result.__class__ = _BothStreams
            return result

else:
    CliRunner = click.testing.CliRunner  # type: ignore[misc]
