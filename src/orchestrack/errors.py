"""The errors orchestrack raises.

Every error derives from :class:`OrchestrackError` and, where one fits, from the matching
built-in, so ``except ValueError`` in user code still works. Messages say what failed, the bad
value, where it came from and what to do about it.
"""

from __future__ import annotations

from orchestrack.evidence import redact


class OrchestrackError(Exception):
    """Root of every orchestrack error. Its message never shows a secret: a message that quotes a
    value (a bad argument, a server's answer) has passwords, tokens and keys in it replaced by ``***``
    (:func:`orchestrack.evidence.redact`)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class InvalidInputError(OrchestrackError, ValueError):
    """A value passed to orchestrack (argument, env var, config file) is not acceptable."""


class PolicyError(InvalidInputError):
    """A run breaks the schema policy and the policy is strict."""


class RunNotFoundError(OrchestrackError, LookupError):
    """No run has the given key or run id."""


class NoActiveRunError(OrchestrackError, LookupError):
    """A fluent call (``log_metrics`` ...) was made with no run to attach it to."""


class StoreError(OrchestrackError, OSError):
    """The store could not be read or written (locked, corrupt, full, unwritable)."""


class MissingExtraError(OrchestrackError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class PromotionRefusedError(OrchestrackError):
    """A run may not become a model version yet: never gated, gate failed or held, or not succeeded.

    The message says why (quoting the gate's summary) and how to proceed (run the gate, or force).
    """


class ModelNotFoundError(OrchestrackError, LookupError):
    """No registered model, model version or alias has the given name."""
