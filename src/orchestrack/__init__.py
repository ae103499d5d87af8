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

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION", "Artifact", "CodeInfo", "ConfigFile", "DataSnapshot", "Environment", "Failure", "FailureHistory",
    "FailureReason",
    "Features", "GateCheck", "GateDecision", "GateFailedError", "GateHeldError", "GateOutcome", "GateSpec",
    "InvalidInputError", "LeakageCheck", "LeakageStatus", "LlmSettings",
    "MissingExtraError", "ModelNotFoundError", "ModelVersion", "NoActiveRunError",
    "OrchestrackError", "OrchestratorInfo", "OrchestratorKind", "PolicyError", "PromotionRefusedError",
    "Diagnosis", "Purpose", "Rule", "Run", "RunNotFoundError", "RunRecord", "RunStatus", "StoreError", "TaskAttempt",
    "TaskStatus", "__version__", "active_run", "check_gate", "classify_failure", "explain_failure",
    "failure_fingerprint", "failure_histories", "failure_history", "gate_step", "get_run",
    "load_gate_spec", "log_artifact", "log_config", "log_dataset", "log_features", "log_llm", "log_llm_usage",
    "log_metrics", "log_params", "log_prompt", "model_version",
    "open_registry", "promote", "reap", "Reaped", "register_rule", "replay_spool", "run_id_for", "search_runs",
    "set_tags",
    "start_run", "waiting_writes", "which",
]
