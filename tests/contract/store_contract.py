"""The behaviour every store must show. A store's test module subclasses :class:`StoreContract`
and provides a ``store`` fixture (and ``artifact_store`` for :class:`ArtifactStoreContract`)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from orchestrack.errors import RunNotFoundError
from orchestrack.lifecycle import run_id_for
from orchestrack.record import (
    Artifact,
    ConfigFile,
    DataSnapshot,
    Failure,
    FailureReason,
    Features,
    GateCheck,
    GateDecision,
    GateOutcome,
    LeakageCheck,
    LeakageStatus,
    LlmSettings,
    MetricPoint,
    OrchestratorInfo,
    Purpose,
    RunRecord,
    RunStatus,
    TaskAttempt,
    TaskStatus,
    utcnow,
)
from orchestrack.stores.base import ArtifactStore, RunQuery, Store

#: How many task attempts one write carries in the wide test (a 1,000-item map).
WIDE_WRITE = 1000


def make_record(key: str, **fields: object) -> RunRecord:
    return RunRecord(run_id=run_id_for(key), key=key, name=key, **fields)  # type: ignore[arg-type]


class StoreContract:
    """Run-record behaviour; ``store`` is a fresh, empty store."""

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert store.uri

    def test_open_is_idempotent_by_key(self, store: Store) -> None:
        first = store.open_run(make_record("p/1", owner="a", purpose=Purpose.TUNING))
        second = store.open_run(make_record("p/1", owner="someone-else"))
        assert first.run_id == second.run_id == run_id_for("p/1")
        assert second.owner == "a"  # the first opener's record stands
        assert store.get_run(first.run_id).purpose is Purpose.TUNING

    def test_find_by_key_or_id(self, store: Store) -> None:
        opened = store.open_run(make_record("p/find"))
        assert store.find_run("p/find").run_id == opened.run_id  # type: ignore[union-attr]
        assert store.find_run(opened.run_id).key == "p/find"  # type: ignore[union-attr]
        assert store.find_run("p/missing") is None
        with pytest.raises(RunNotFoundError):
            store.get_run(run_id_for("p/missing"))

    def test_params_and_tags_overwrite_by_key(self, store: Store) -> None:
        run = store.open_run(make_record("p/params"))
        store.log_params(run.run_id, {"lr": 0.1, "layers": 3, "name": "x", "flag": True, "none": None})
        store.log_params(run.run_id, {"lr": 0.2})
        store.set_tags(run.run_id, {"team": "ml"})
        got = store.get_run(run.run_id)
        assert got.params == {"lr": 0.2, "layers": 3, "name": "x", "flag": True, "none": None}
        assert isinstance(got.params["layers"], int) and isinstance(got.params["flag"], bool)
        assert got.tags == {"team": "ml"}

    def test_metrics_latest_slices_and_series(self, store: Store) -> None:
        run = store.open_run(make_record("p/metrics"))
        now = utcnow()
        store.log_metrics(run.run_id, [MetricPoint(key="loss", value=v, step=s, timestamp=now + timedelta(seconds=s))
                                       for s, v in enumerate([3.0, 2.0, 1.0])])
        store.log_metrics(run.run_id, [MetricPoint(key="auc", value=0.9, slice="country=DE"),
                                       MetricPoint(key="auc", value=0.8)])
        got = store.get_run(run.run_id)
        assert got.metrics == {"loss": 1.0, "auc": 0.8}
        assert got.slice_metrics == {"country=DE": {"auc": 0.9}}
        assert [(p.step, p.value) for p in got.metric_series["loss"]] == [(0, 3.0), (1, 2.0), (2, 1.0)]

    def test_a_run_read_without_series_is_the_run_less_its_series(self, store: Store) -> None:
        run = store.open_run(make_record("p/no-series"))
        now = utcnow()
        store.log_metrics(run.run_id, [MetricPoint(key="loss", value=v, step=s, task="train",
                                                   timestamp=now + timedelta(seconds=s))
                                       for s, v in enumerate([3.0, 2.0, 1.0])])
        store.log_metrics(run.run_id, [MetricPoint(key="auc", value=0.9, slice="country=DE")])
        store.record_tasks(run.run_id, [TaskAttempt(task_id="train", name="train", attempt=1,
                                                    status=TaskStatus.SUCCEEDED, started_at=now)])
        whole = store.get_run(run.run_id)
        assert whole.metric_series
        assert store.get_run_without_series(run.run_id) == whole.model_copy(update={"metric_series": {}})
        with pytest.raises(RunNotFoundError):
            store.get_run_without_series(run_id_for("p/missing"))

    def test_data_and_artifacts(self, store: Store) -> None:
        run = store.open_run(make_record("p/data"))
        store.log_data(run.run_id, DataSnapshot(name="train", uri="s3://b/train/", version="v1", rows=10))
        store.log_data(run.run_id, DataSnapshot(name="train", uri="s3://b/train/", version="v2", rows=12))
        store.log_data(run.run_id, DataSnapshot(name="eval", uri="s3://b/eval/"))
        artifact = Artifact(name="model.pt", kind="model", uri="file:///x", sha256="ab" * 32, size_bytes=3)
        store.log_artifact(run.run_id, artifact)
        got = store.get_run(run.run_id)
        assert [(d.name, d.version) for d in got.data] == [("train", "v2"), ("eval", None)]
        assert got.artifacts == [artifact]

    def test_data_snapshot_checklist_fields_round_trip(self, store: Store) -> None:
        run = store.open_run(make_record("p/data-checklist"))
        snapshot = DataSnapshot(name="train", uri="s3://b/train/", filters={"country": ["DE", "FR"], "min_age": 18},
                                labels_as_of=date(2026, 10, 1),
                                leakage_check=LeakageCheck(status=LeakageStatus.FAILED, note="id leaks"))
        by_time = DataSnapshot(name="eval", uri="s3://b/eval/", filters="date >= '2026-10-01'",
                               labels_as_of=datetime(2026, 10, 1, 6, 30, tzinfo=UTC),
                               leakage_check=LeakageCheck(status=LeakageStatus.NOT_RUN))
        store.log_data(run.run_id, snapshot)
        store.log_data(run.run_id, by_time)
        assert store.get_run(run.run_id).data == [snapshot, by_time]

    def test_configs_replace_by_name_and_keep_their_order(self, store: Store) -> None:
        run = store.open_run(make_record("p/configs"))
        train = ConfigFile(name="train.yaml", format="yaml", source="/repo/conf/train.yaml", sha256="ab" * 32,
                           size_bytes=40, artifact="configs/train.yaml",
                           values={"model.lr": 0.1, "model.layers[0]": 64, "db.password": "***", "flag": True,
                                   "none": None})
        prompt = ConfigFile(name="answer", kind="prompt", format="text", source="inline", sha256="cd" * 32,
                            size_bytes=12, artifact="prompts/answer")
        store.log_config(run.run_id, train)
        store.log_config(run.run_id, prompt)
        changed = train.model_copy(update={"sha256": "ef" * 32, "values": {**train.values, "model.lr": 0.2}})
        store.log_config(run.run_id, changed)
        assert store.get_run(run.run_id).configs == [changed, prompt]

    def test_features_llm_and_metric_units_round_trip(self, store: Store) -> None:
        run = store.open_run(make_record("p/llm"))
        features = Features(columns=["age"], target="churned", joins=["a LEFT JOIN b ON id"],
                            transformations=["log1p(age)"], feature_store="feast:churn", feature_store_version="7")
        llm = LlmSettings(provider="vllm", model="llama-3.1-8b", retrieval={"top_k": 8, "index": "docs"},
                          temperature=0.2)
        store.update_run(run.run_id, {"features": features, "llm": llm,
                                      "metric_units": {"llm.latency": "s", "llm.cost": "USD"}})
        got = store.get_run(run.run_id)
        assert got.features == features and got.llm == llm
        assert got.llm.model_dump()["temperature"] == 0.2
        assert got.metric_units == {"llm.latency": "s", "llm.cost": "USD"}
        store.update_run(run.run_id, {"metric_units": {"ttft": "ms", "llm.cost": "EUR"}})  # another process's
        assert store.get_run(run.run_id).metric_units == {"llm.latency": "s", "llm.cost": "EUR", "ttft": "ms"}

    def test_find_artifacts_by_sha256(self, store: Store) -> None:
        old, new = store.open_run(make_record("p/which-1")), store.open_run(make_record("p/which-2"))
        model = Artifact(name="model.pt", kind="model", uri="file:///m", sha256="cd" * 32, size_bytes=3)
        store.log_artifact(old.run_id, model)
        store.log_artifact(new.run_id, model.model_copy(update={"name": "copy.pt"}))
        store.log_artifact(new.run_id, Artifact(name="other", uri="file:///o", sha256="ef" * 32, size_bytes=1))
        found = store.find_artifacts("cd" * 32)
        assert sorted((record.key, artifact.name) for record, artifact in found) == [
            ("p/which-1", "model.pt"), ("p/which-2", "copy.pt")]
        assert store.find_artifacts("00" * 32) == []

    def test_task_attempts_upsert(self, store: Store) -> None:
        run = store.open_run(make_record("p/tasks"))
        start = utcnow()
        store.record_tasks(run.run_id, [TaskAttempt(name="train", attempt=1, status=TaskStatus.RUNNING,
                                                    started_at=start)])
        failure = Failure(reason=FailureReason.TIMEOUT, summary="Task 'train' ran past its limit.", task="train")
        store.record_tasks(run.run_id, [TaskAttempt(name="train", attempt=1, status=TaskStatus.FAILED,
                                                    started_at=start, ended_at=utcnow(), failure=failure)])
        store.record_tasks(run.run_id, [TaskAttempt(name="train", attempt=2, status=TaskStatus.SUCCEEDED,
                                                    started_at=utcnow())])
        got = store.get_run(run.run_id)
        assert [(t.task_id, t.name, t.attempt, t.status) for t in got.tasks] == [
            ("train", "train", 1, TaskStatus.FAILED), ("train", "train", 2, TaskStatus.SUCCEEDED)]
        assert got.tasks[0].failure == failure

    def test_tasks_are_identified_by_task_id_not_by_name(self, store: Store) -> None:
        run = store.open_run(make_record("p/same-name"))
        twins = [TaskAttempt(task_id=f"tr-{i}", name="square-3a1", attempt=1, status=TaskStatus.SUCCEEDED,
                             started_at=utcnow()) for i in range(3)]
        store.record_tasks(run.run_id, twins)
        got = store.get_run(run.run_id)
        assert sorted(t.task_id for t in got.tasks) == ["tr-0", "tr-1", "tr-2"]
        assert {t.name for t in got.tasks} == {"square-3a1"}
        assert store.get_progress(run.run_id, "tr-1")[1] == [twins[1]]

    def test_an_ended_attempt_keeps_its_first_ending(self, store: Store) -> None:
        run = store.open_run(make_record("p/first-word"))
        failed = TaskAttempt(task_id="t", name="t", attempt=1, status=TaskStatus.FAILED, started_at=utcnow(),
                             ended_at=utcnow(), failure=Failure(reason=FailureReason.CANCELLED, summary="stopped."))
        store.record_tasks(run.run_id, [failed])
        store.record_tasks(run.run_id, [failed.model_copy(update={"status": TaskStatus.RUNNING, "failure": None})])
        store.record_tasks(run.run_id, [failed.model_copy(update={"status": TaskStatus.SUCCEEDED, "failure": None})])
        assert store.get_run(run.run_id).tasks == [failed]

    def test_an_ending_without_a_start_keeps_the_stored_start(self, store: Store) -> None:
        run = store.open_run(make_record("p/keep-start"))
        started = TaskAttempt(task_id="t", name="t", attempt=1, status=TaskStatus.RUNNING, started_at=utcnow())
        store.record_tasks(run.run_id, [started])
        store.record_tasks(run.run_id, [TaskAttempt(task_id="t", name="t", attempt=1, status=TaskStatus.SUCCEEDED,
                                                    ended_at=utcnow())])
        (got,) = store.get_run(run.run_id).tasks
        assert (got.status, got.started_at) == (TaskStatus.SUCCEEDED, started.started_at)

    def test_many_attempts_in_one_write(self, store: Store) -> None:
        run = store.open_run(make_record("p/wide"))
        attempts = [TaskAttempt(task_id=f"map[{i}]", name=f"map[{i}]", attempt=0 if i % 10 == 0 else 1,
                                status=TaskStatus.SKIPPED if i % 10 == 0 else TaskStatus.SUCCEEDED,
                                cached=i % 7 == 0) for i in range(WIDE_WRITE)]
        store.record_tasks(run.run_id, attempts)
        got = store.get_run(run.run_id)
        assert sorted(got.tasks, key=lambda t: int(t.task_id[4:-1])) == attempts

    def test_metrics_keep_their_task(self, store: Store) -> None:
        run = store.open_run(make_record("p/task-metrics"))
        store.log_metrics(run.run_id, [MetricPoint(key="accuracy", value=v, task=f"eval[{i}]")
                                       for i, v in enumerate((0.7, 0.8, 0.9))])
        store.log_metrics(run.run_id, [MetricPoint(key="accuracy", value=0.85)])
        got = store.get_run(run.run_id)
        assert got.task_metrics == {"eval[0]": {"accuracy": 0.7}, "eval[1]": {"accuracy": 0.8},
                                    "eval[2]": {"accuracy": 0.9}}
        assert got.metrics == {"accuracy": 0.85}

    def test_progress_is_status_and_attempts(self, store: Store) -> None:
        run = store.open_run(make_record("p/progress"))
        attempt = TaskAttempt(name="load", attempt=1, status=TaskStatus.SUCCEEDED, started_at=utcnow())
        store.record_tasks(run.run_id, [attempt])
        store.log_metrics(run.run_id, [MetricPoint(key="loss", value=1.0)])
        assert store.get_progress(run.run_id) == (RunStatus.RUNNING, [attempt])
        store.update_run(run.run_id, {"status": RunStatus.SUCCEEDED})
        assert store.get_progress(run.run_id)[0] is RunStatus.SUCCEEDED
        with pytest.raises(RunNotFoundError):
            store.get_progress(run_id_for("p/none"))

    def test_update_run_closes_and_reopens(self, store: Store) -> None:
        run = store.open_run(make_record("p/close", orchestrator=OrchestratorInfo(pipeline="p")))
        failure = Failure(reason=FailureReason.DATA_ERROR, summary="Task 'load' found no input.", task="load")
        ended = utcnow()
        store.update_run(run.run_id, {"status": RunStatus.FAILED, "ended_at": ended, "failure": failure,
                                      "incomplete": ["code.commit"]})
        got = store.get_run(run.run_id)
        assert got.status is RunStatus.FAILED and got.failure == failure and got.incomplete == ["code.commit"]
        assert abs((got.ended_at - ended).total_seconds()) < 0.001  # type: ignore[operator]
        store.update_run(run.run_id, {"status": "running", "ended_at": None, "failure": None})
        again = store.get_run(run.run_id)
        assert again.status is RunStatus.RUNNING and again.ended_at is None and again.failure is None

    def test_gate_decision_round_trips_and_clears(self, store: Store) -> None:
        run = store.open_run(make_record("p/gate", orchestrator=OrchestratorInfo(pipeline="p")))
        decision = GateDecision(outcome=GateOutcome.HELD, summary="Quality gate held the run for review: auc jumped.",
                                checks=[GateCheck(kind="ceiling", subject="auc[country=DE]", value=0.999, bound=0.995,
                                                  outcome=GateOutcome.HELD, sentence="auc = 0.999 is beyond 0.995.")],
                                spec="gate.yaml", spec_sha256="ab" * 32)
        store.update_run(run.run_id, {"gate": decision})
        assert store.get_run(run.run_id).gate == decision
        store.update_run(run.run_id, {"gate": None})
        assert store.get_run(run.run_id).gate is None

    def test_update_unknown_run_raises(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            store.update_run(run_id_for("p/nope"), {"status": RunStatus.FAILED})

    def test_search_filters_newest_first(self, store: Store) -> None:
        for index, (pipeline, status, reason) in enumerate(
                [("a", RunStatus.SUCCEEDED, None), ("a", RunStatus.FAILED, FailureReason.TIMEOUT),
                 ("b", RunStatus.FAILED, FailureReason.DATA_ERROR)]):
            run = store.open_run(make_record(f"s/{index}", orchestrator=OrchestratorInfo(pipeline=pipeline),
                                             purpose=Purpose.BASELINE if index else Purpose.TUNING,
                                             owner="team-" + pipeline))
            failure = Failure(reason=reason, summary="x") if reason else None
            store.update_run(run.run_id, {"status": status, "failure": failure, "ended_at": utcnow()})
            time.sleep(0.002)
        assert [r.key for r in store.search_runs(RunQuery())] == ["s/2", "s/1", "s/0"]
        assert [r.key for r in store.search_runs(RunQuery(pipeline="a"))] == ["s/1", "s/0"]
        assert [r.key for r in store.search_runs(RunQuery(status=RunStatus.FAILED))] == ["s/2", "s/1"]
        assert [r.key for r in store.search_runs(RunQuery(reason=FailureReason.TIMEOUT))] == ["s/1"]
        assert [r.key for r in store.search_runs(RunQuery(purpose=Purpose.TUNING))] == ["s/0"]
        assert [r.key for r in store.search_runs(RunQuery(owner="team-b"))] == ["s/2"]
        assert len(store.search_runs(RunQuery(limit=1))) == 1

    def test_search_pages_by_start_time(self, store: Store) -> None:
        """``started_before`` is inclusive: paging by the last page's oldest start skips no run, even runs
        that share that start (``orchestrack reap`` reads every running run this way)."""
        base = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
        starts = [base, base + timedelta(seconds=1), base + timedelta(seconds=1), base + timedelta(seconds=2)]
        for index, started_at in enumerate(starts):
            store.open_run(make_record(f"page/{index}", started_at=started_at))
        cut = base + timedelta(seconds=1)
        assert sorted(r.key for r in store.search_runs(RunQuery(started_before=cut))) == ["page/0", "page/1", "page/2"]
        assert [r.key for r in store.search_runs(RunQuery(started_before=base, summary=True))] == ["page/0"]
        assert store.search_runs(RunQuery(started_before=base - timedelta(seconds=1))) == []

    def test_search_by_failure_fingerprint(self, store: Store) -> None:
        """Three failed runs with one fingerprint and one with another: the search by fingerprint finds
        the three, newest first, whether the failure came with the opening or with the close."""
        if hasattr(store, "page_size"):
            store.page_size = 2  # a store that reads by pages must read them all
        same, other = "1a2b3c4d5e6f7a8b", "9f8e7d6c5b4a3f2e"
        for index, fingerprint in enumerate([same, other, same, None, same]):
            failure = Failure(reason=FailureReason.DATA_ERROR, summary=f"Task 'load' failed ({index}).", task="load",
                              fingerprint=fingerprint)
            if index == 0:  # recorded when the run is opened (a run replayed from the spool)
                store.open_run(make_record(f"fp/{index}", status=RunStatus.FAILED, failure=failure))
            else:
                run = store.open_run(make_record(f"fp/{index}"))
                store.update_run(run.run_id, {"status": RunStatus.FAILED, "failure": failure, "ended_at": utcnow()})
            time.sleep(0.002)
        found = store.search_runs(RunQuery(fingerprint=same))
        assert [r.key for r in found] == ["fp/4", "fp/2", "fp/0"]
        assert all(r.failure is not None and r.failure.fingerprint == same for r in found)
        assert [r.key for r in store.search_runs(RunQuery(fingerprint=other))] == ["fp/1"]
        assert [r.key for r in store.search_runs(RunQuery(fingerprint=same, limit=2))] == ["fp/4", "fp/2"]
        store.update_run(run_id_for("fp/2"), {"failure": None})  # a cleared failure leaves the group
        assert [r.key for r in store.search_runs(RunQuery(fingerprint=same))] == ["fp/4", "fp/0"]
        assert store.search_runs(RunQuery(fingerprint="0" * 16)) == []

    def test_a_summary_search_holds_what_the_run_itself_holds(self, store: Store) -> None:
        """``RunQuery(summary=True)`` finds the same runs with the same run-level fields; a store may
        leave out task attempts and metric series (MLflow does: one request a page)."""
        if hasattr(store, "page_size"):
            store.page_size = 2
        for index in range(3):
            run = store.open_run(make_record(f"sum/{index}", orchestrator=OrchestratorInfo(pipeline="nightly")))
            store.log_params(run.run_id, {"lr": 0.1 * (index + 1)})
            store.log_metrics(run.run_id, [MetricPoint(key="loss", value=1.0 / (step + 1), step=step)
                                           for step in range(3)])
            store.record_tasks(run.run_id, [TaskAttempt(task_id="train", name="train", attempt=1,
                                                        status=TaskStatus.FAILED)])
            failure = Failure(reason=FailureReason.DATA_ERROR, summary=f"Task 'load' failed ({index}).", task="load",
                              fingerprint="5a5a5a5a5a5a5a5a")
            store.update_run(run.run_id, {"status": RunStatus.FAILED, "failure": failure, "ended_at": utcnow()})
            time.sleep(0.002)
        full = store.search_runs(RunQuery(pipeline="nightly"))
        brief = store.search_runs(RunQuery(pipeline="nightly", summary=True))
        assert [r.run_id for r in brief] == [r.run_id for r in full] and len(brief) == 3
        for short, whole in zip(brief, full, strict=True):
            assert (short.key, short.status, short.failure, short.orchestrator.pipeline, short.params,
                    short.metrics, short.ended_at) == (whole.key, whole.status, whole.failure,
                                                       whole.orchestrator.pipeline, whole.params, whole.metrics,
                                                       whole.ended_at)
        assert [r.key for r in store.search_runs(RunQuery(fingerprint="5a5a5a5a5a5a5a5a", summary=True))] == [
            "sum/2", "sum/1", "sum/0"]

    def test_a_task_failure_keeps_its_fingerprint(self, store: Store) -> None:
        run = store.open_run(make_record("fp/task"))
        failure = Failure(reason=FailureReason.CODE_ERROR, summary="Task 'train' raised.", task="train",
                          error_type="ValueError", fingerprint="0123456789abcdef")
        store.record_tasks(run.run_id, [TaskAttempt(task_id="train", name="train", attempt=1,
                                                    status=TaskStatus.FAILED, failure=failure)])
        [attempt] = store.get_run(run.run_id).tasks
        assert attempt.failure == failure

    def test_record_round_trips(self, store: Store) -> None:
        record = make_record("p/full", owner="o", purpose=Purpose.ABLATION,
                             orchestrator=OrchestratorInfo(kind="airflow", pipeline="dag", pipeline_version="3",
                                                           run_id="manual__1", url="http://x", details={"a": 1}))
        record.code.commit = "c0ffee"
        record.environment.packages = {"torch": "2.5"}
        record.features.columns = ["a", "b"]
        stored = store.open_run(record)
        assert stored.model_dump(exclude={"started_at"}) == record.model_dump(exclude={"started_at"})


class ArtifactStoreContract:
    """Artifact behaviour; ``artifact_store`` is a fresh, empty artifact store."""

    def test_is_an_artifact_store(self, artifact_store: ArtifactStore) -> None:
        assert isinstance(artifact_store, ArtifactStore)

    def test_file_round_trip_content_addressed(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        source = tmp_path / "model.pt"
        source.write_bytes(b"weights" * 1000)
        uri, sha256, size = artifact_store.put(source, "model.pt")
        again = artifact_store.put(source, "copy.pt")
        assert again == (uri, sha256, size) and size == 7000 and len(sha256) == 64
        fetched = artifact_store.fetch(uri, tmp_path / "out" / "model.pt")
        assert fetched.read_bytes() == source.read_bytes()

    def test_folder_round_trip(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        folder = tmp_path / "model"
        (folder / "sub").mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "sub" / "weights.bin").write_bytes(b"\x00" * 100)
        uri, _, size = artifact_store.put(folder, "model")
        assert size == 102
        out = artifact_store.fetch(uri, tmp_path / "restored")
        assert (out / "sub" / "weights.bin").read_bytes() == b"\x00" * 100
        assert (out / "config.json").read_text() == "{}"
