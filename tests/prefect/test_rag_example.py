"""The LLM example flow (examples/prefect/rag_eval_flow.py) run by real Prefect: the run records its
prompt template, model and retrieval settings, its config, and latency, cost and tokens per batch
as metrics with units; a changed prompt shows in `compare` as exactly that."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import orchestrack
from orchestrack import RunStatus
from orchestrack.views import comparison_rows

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prefect"


def load_example(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("rag_eval_flow", folder / "rag_eval_flow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_llm_example_records_prompt_settings_and_usage_with_units(tmp_path: Path) -> None:
    accuracy = load_example(EXAMPLE).rag_eval()
    [record] = orchestrack.search_runs()
    assert record.status is RunStatus.SUCCEEDED and record.metrics["answer_accuracy"] == accuracy == 1.0
    prompt = next(c for c in record.configs if c.kind == "prompt")
    assert prompt.name == "answer" and prompt.artifact == "prompts/answer"
    assert prompt.sha256 == hashlib.sha256((EXAMPLE / "rag_answer.txt").read_bytes()).hexdigest()
    config = next(c for c in record.configs if c.kind == "config")
    assert config.name == "rag_eval.yaml" and config.values["retrieval.top_k"] == 2
    assert (record.llm.provider, record.llm.model) == ("stub", "extractive-v1")
    assert record.llm.retrieval == {"index": "faq-2026-11", "top_k": 2, "scorer": "word-overlap"}
    assert record.metric_units == {"llm.latency": "s", "llm.cost": "USD", "llm.input_tokens": "tokens",
                                   "llm.output_tokens": "tokens"}
    assert [p.step for p in record.metric_series["llm.input_tokens"]] == [0, 1]  # one point per batch
    assert all(p.value > 0 for p in record.metric_series["llm.cost"])


def test_a_changed_prompt_is_the_one_difference_compare_shows(tmp_path: Path) -> None:
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    load_example(copy).rag_eval()
    template = copy / "rag_answer.txt"
    template.write_text(template.read_text().replace("from the context only", "using only the context"))
    load_example(copy).rag_eval()
    records = orchestrack.search_runs()
    differing = [(r["section"], r["field"]) for r in comparison_rows(records) if r["differs"]]
    volatile = {"llm.latency (s)"}  # wall time: never the same twice
    assert [d for d in differing if d[1] not in volatile] == [("config", "answer sha256")]
