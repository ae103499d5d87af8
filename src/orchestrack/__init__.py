"""orchestrack: every pipeline execution becomes one tracked run.

Example::

    import orchestrack
    run = orchestrack.start_run(key="nightly-train/2026-11-28", owner="ml-platform", purpose="tuning")
    with run.task("train", attempt=1):
        orchestrack.log_params({"lr": 3e-4})
        orchestrack.log_metrics({"auc": 0.91})
    run.finish()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it. They load on first use (PEP 562), so a process that
#: only tracks (an Airflow task, a KFP component) does not import the gate, the registry or the rules.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys([
        "Diagnosis", "Rule", "classify_failure", "explain_failure", "register_rule",
    ], "classify"),
    **dict.fromkeys([
        "InvalidInputError", "MissingExtraError", "ModelNotFoundError", "NoActiveRunError",
        "OrchestrackError", "PolicyError", "PromotionRefusedError", "RunNotFoundError", "StoreError",
    ], "errors"),
    **dict.fromkeys(["failure_fingerprint"], "fingerprint"),
    **dict.fromkeys([
        "GateFailedError", "GateHeldError", "GateSpec", "check_gate", "gate_step", "load_gate_spec",
    ], "gate"),
    **dict.fromkeys(["FailureHistory", "failure_histories", "failure_history"], "history"),
    **dict.fromkeys([
        "Run", "active_run", "get_run", "log_artifact", "log_config", "log_dataset", "log_features",
        "log_llm", "log_llm_usage", "log_metrics", "log_params", "log_prompt", "replay_spool",
        "run_id_for", "search_runs", "set_tags", "start_run", "waiting_writes",
    ], "lifecycle"),
    **dict.fromkeys(["Reaped", "reap"], "reaper"),
    **dict.fromkeys([
        "SCHEMA_VERSION", "Artifact", "CodeInfo", "ConfigFile", "DataSnapshot", "Environment",
        "Failure", "FailureReason", "Features", "GateCheck", "GateDecision", "GateOutcome",
        "LeakageCheck", "LeakageStatus", "LlmSettings", "OrchestratorInfo", "OrchestratorKind",
        "Purpose", "RunRecord", "RunStatus", "TaskAttempt", "TaskStatus",
    ], "record"),
    **dict.fromkeys(["ModelVersion", "model_version", "open_registry", "promote", "which"], "registry"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (``orchestrack.lifecycle``), imported on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        try:
            return importlib.import_module(f"orchestrack.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"orchestrack.{name}":
                raise
            raise AttributeError(f"module 'orchestrack' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"orchestrack.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from orchestrack.classify import Diagnosis, Rule, classify_failure, explain_failure, register_rule
    from orchestrack.errors import (
        InvalidInputError,
        MissingExtraError,
        ModelNotFoundError,
        NoActiveRunError,
        OrchestrackError,
        PolicyError,
        PromotionRefusedError,
        RunNotFoundError,
        StoreError,
    )
    from orchestrack.fingerprint import failure_fingerprint
    from orchestrack.gate import GateFailedError, GateHeldError, GateSpec, check_gate, gate_step, load_gate_spec
    from orchestrack.history import FailureHistory, failure_histories, failure_history
    from orchestrack.lifecycle import (
        Run,
        active_run,
        get_run,
        log_artifact,
        log_config,
        log_dataset,
        log_features,
        log_llm,
        log_llm_usage,
        log_metrics,
        log_params,
        log_prompt,
        replay_spool,
        run_id_for,
        search_runs,
        set_tags,
        start_run,
        waiting_writes,
    )
    from orchestrack.reaper import Reaped, reap
    from orchestrack.record import (
        SCHEMA_VERSION,
        Artifact,
        CodeInfo,
        ConfigFile,
        DataSnapshot,
        Environment,
        Failure,
        FailureReason,
        Features,
        GateCheck,
        GateDecision,
        GateOutcome,
        LeakageCheck,
        LeakageStatus,
        LlmSettings,
        OrchestratorInfo,
        OrchestratorKind,
        Purpose,
        RunRecord,
        RunStatus,
        TaskAttempt,
        TaskStatus,
    )
    from orchestrack.registry import ModelVersion, model_version, open_registry, promote, which
