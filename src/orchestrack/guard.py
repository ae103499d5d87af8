"""The one fail-open guard for adapter hooks: tracking never changes the outcome of a task.

Every orchestrator callback orchestrack implements (Airflow listener hooks, Prefect state hooks,
the KFP executor's tracking) runs through :func:`fail_open`. A fault is logged with "no impact" and
swallowed; under ``ORCHESTRACK_STRICT=1`` (our own tests) it is raised, so a broken hook cannot
hide behind a green pipeline.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from orchestrack.evidence import redact
from orchestrack.settings import load_settings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def strict() -> bool:
    """Whether tracking faults raise (``ORCHESTRACK_STRICT``); ``False`` when the settings themselves are broken."""
    try:
        return load_settings().strict
    except Exception:
        return False


def fail_open(where: str, *, warn: tuple[type[Exception], ...] = ()) -> Callable[[F], F]:
    """Decorate an adapter hook so that a tracking fault is logged, not raised (raised in strict mode).

    A fault of a ``warn`` type (input the user must fix, such as a missing config file, whose
    message already says what to do) is one warning line with that message; any other is logged
    with its traceback.

    Example::

        @fail_open("Airflow listener")
        def on_task_instance_running(self, previous_state, task_instance): ...
    """

    def decorate(hook: F) -> F:
        @functools.wraps(hook)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return hook(*args, **kwargs)
            except Exception as err:
                if strict():
                    raise
                if isinstance(err, warn):
                    log.warning("orchestrack %s: %s; no impact on the pipeline", where, redact(str(err)))
                    return None
                log_fault(log, "orchestrack %s hook %s failed; no impact on the pipeline", where, hook.__name__)
                return None

        return guarded  # type: ignore[return-value]

    return decorate


def log_fault(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled as an ERROR with its traceback as redacted text (what
    ``logger.exception`` does, except that a fault's message may quote a secret the task handed over)."""
    error = sys.exc_info()[1]
    trace = redact("".join(traceback.format_exception(error)).rstrip()) if error is not None else ""
    logger.error(message + ("\n%s" if trace else ""), *args, *((trace,) if trace else ()))
