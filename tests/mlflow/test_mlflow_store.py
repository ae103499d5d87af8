"""What the MLflow store writes, read back with MLflow's own client, and opening by key from 16
processes released at the same instant."""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import delivery
from orchestrack.errors import StoreError
from orchestrack.record import CodeInfo, MetricPoint, TaskAttempt, TaskStatus, utcnow
from orchestrack.stores.mlflow_rest import MlflowRestClient
from orchestrack.stores.mlflow_store import MlflowStore
from tests.contract.store_contract import make_record
from tests.mlflow.conftest import delete_orchestrack_experiments
from tests.servers import Forwarder, MlflowServer

PROCESSES = 16


def _children(client: Any, parent: Any) -> list[Any]:
    return list(client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                   max_results=1000))


def _requests_of(store: MlflowStore) -> list[str]:
    """The endpoints ``store`` calls from now on, in order (the list fills as it calls)."""
    calls: list[str] = []
    original = store.client.call

    def counting(method: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(endpoint)
        return original(method, endpoint, *args, **kwargs)

    store.client.call = counting  # type: ignore[method-assign]
    return calls


def _mlflow_run(client: Any, store: MlflowStore, run_id: str) -> Any:
    mlflow_run_id, _ = store._ids(run_id)
    return client.get_run(mlflow_run_id)


@pytest.fixture
def tracked(store: MlflowStore, monkeypatch: pytest.MonkeyPatch) -> MlflowStore:
    """orchestrack's public API pointed at this test's MLflow store."""
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", store.uri)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__EXPERIMENT", store.experiment_template)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__CLAIMS", store.claims)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no cloud to ask for the S3 data set here
    from orchestrack import stores

    stores.close_all()
    return store


def test_a_run_reads_back_in_mlflow_as_mlflow_users_expect(tracked: MlflowStore, mlflow_client: Any) -> None:
    run = orchestrack.start_run(key="nightly/2026-12-01", owner="ml-platform", purpose="tuning", pipeline="nightly",
                                pipeline_version="41", code=CodeInfo(commit="c0ffee1", branch="main"),
                                image="registry.example.com/train:1.4")
    with run.task("load"):
        orchestrack.log_params({"lr": 0.01, "layers": 4, "optimizer": "adam"})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            orchestrack.log_metrics({"loss": loss}, step=step)
        orchestrack.log_metrics({"auc": 0.81}, slice="country=DE")
        orchestrack.log_dataset("train", "s3://data/train.parquet", version="v7", rows=1200)
    with pytest.raises(TimeoutError), run.task("train"):
        raise TimeoutError("training step 412 exceeded 3600 s")
    record = run.finish()
    assert record is not None and record.status == "failed"

    mlflow_run = _mlflow_run(mlflow_client, tracked, run.run_id)
    tags = mlflow_run.data.tags
    assert mlflow_run.info.status == "FAILED"
    assert mlflow_client.get_experiment(mlflow_run.info.experiment_id).name == tracked.experiment_name(record)
    assert tags["mlflow.runName"] == record.name and tags["mlflow.user"] == "ml-platform"
    assert tags["mlflow.source.git.commit"] == "c0ffee1" and tags["mlflow.source.git.branch"] == "main"
    assert (tags["orchestrack.key"], tags["orchestrack.status"], tags["orchestrack.purpose"]) == (
        "nightly/2026-12-01", "failed", "tuning")
    assert tags["orchestrack.reason"] == "timeout" and tags["orchestrack.sentence"] == record.failure.summary
    assert tags["orchestrack.pipeline_version"] == "41"
    assert tags["orchestrack.image"] == "registry.example.com/train:1.4"
    assert mlflow_run.data.params == {"lr": "0.01", "layers": "4", "optimizer": "adam"}
    history = mlflow_client.get_metric_history(mlflow_run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert any(m.startswith("slices/country_DE/auc") for m in mlflow_run.data.metrics)

    children = {c.data.tags["orchestrack.task_id"]: c for c in _children(mlflow_client, mlflow_run)}
    assert {k: c.info.status for k, c in children.items()} == {"load": "FINISHED", "train": "FAILED"}
    assert children["train"].data.tags["orchestrack.reason"] == "timeout"
    assert children["load"].data.tags["mlflow.runName"] == "load #1"
    inputs = mlflow_run.inputs.dataset_inputs  # what the MLflow UI shows as the run's datasets
    assert [(i.dataset.name, i.dataset.source_type) for i in inputs] == [("train", "s3")]

    # The same record as the embedded store would give.
    again = orchestrack.get_run("nightly/2026-12-01")
    assert again.metric_series["loss"][-1].value == 0.3 and again.slice_metrics == {"country=DE": {"auc": 0.81}}
    assert [(t.task_id, t.status) for t in again.tasks] == [("load", "succeeded"), ("train", "failed")]


def test_statuses_map_to_mlflow_and_a_closed_run_reopens(tracked: MlflowStore, mlflow_client: Any) -> None:
    good = orchestrack.start_run(key="s/good", pipeline="s")
    with good.task("a"):
        pass
    good.finish()
    stopped = orchestrack.start_run(key="s/stopped", pipeline="s")
    stopped.finish(status="cancelled")
    assert _mlflow_run(mlflow_client, tracked, good.run_id).info.status == "FINISHED"
    assert _mlflow_run(mlflow_client, tracked, stopped.run_id).info.status == "KILLED"
    # A new attempt on a closed run (an Airflow "clear") opens it again, in MLflow too.
    good.start_task("a", 2)
    assert _mlflow_run(mlflow_client, tracked, good.run_id).info.status == "RUNNING"
    assert orchestrack.get_run("s/good").status == "running"


def test_values_go_in_few_requests(store: MlflowStore) -> None:
    run = store.open_run(make_record("batch/1"))
    calls = _requests_of(store)
    store.log_metrics(run.run_id, [MetricPoint(key="loss", value=1 / (s + 1), step=s) for s in range(2500)])
    assert calls == ["runs/log-batch"] * 3  # MLflow takes 1,000 metrics a request
    calls.clear()
    store.log_params(run.run_id, {f"p{i}": i for i in range(250)})
    assert calls == ["runs/log-batch"] * 3  # and 100 params (the run, made just now, has none to compare)
    assert len(store.get_run(run.run_id).metric_series["loss"]) == 2500


def test_a_task_start_reads_its_progress_from_a_fresh_read_of_the_run(store: MlflowStore, server: MlflowServer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's progress (what a task start reads) needs no request within READ_FRESH_S of this instance reading
    or making the whole run: it is that read plus this instance's own writes since. Past it, the run is read
    again, and a close made by another process is seen."""
    from orchestrack.record import RunStatus
    from orchestrack.stores import mlflow_store

    monkeypatch.setattr(mlflow_store, "READ_FRESH_S", 2.0)
    run = store.open_run(make_record("progress/1"))
    calls = _requests_of(store)
    assert store.get_progress(run.run_id, "prepare") == (RunStatus.RUNNING, [])
    first = TaskAttempt(task_id="prepare", name="prepare", attempt=1, status=TaskStatus.FAILED, started_at=utcnow(),
                        ended_at=utcnow())
    store.record_tasks(run.run_id, [first])
    calls.clear()
    status, attempts = store.get_progress(run.run_id, "prepare")
    assert (status, [a.attempt for a in attempts], calls) == (RunStatus.RUNNING, [1], [])
    store.update_run(run.run_id, {"status": RunStatus.FAILED, "ended_at": utcnow()})
    calls.clear()
    assert store.get_progress(run.run_id, "prepare")[0] is RunStatus.FAILED and calls == []  # its own close

    # Another process reopens the run and records an attempt: seen once the read has aged.
    other = MlflowStore(server.url, experiment=store.experiment_template, claims=store.claims)
    other.update_run(run.run_id, {"status": RunStatus.RUNNING, "ended_at": None})
    other.record_tasks(run.run_id, [first.model_copy(update={"attempt": 2, "status": TaskStatus.RUNNING,
                                                                "ended_at": None})])
    time.sleep(2.1)
    status, attempts = store.get_progress(run.run_id, "prepare")
    assert (status, [a.attempt for a in attempts]) == (RunStatus.RUNNING, [1, 2])
    assert calls == ["runs/search"]  # the run and its task runs, in one search
    # The whole run's progress (what the reaper and a run's end read) is always read.
    calls.clear()
    assert len(store.get_progress(run.run_id)[1]) == 2 and calls == ["runs/search"]


def test_a_param_logged_again_takes_the_new_value(store: MlflowStore, mlflow_client: Any) -> None:
    run = store.open_run(make_record("params/1"))
    store.log_params(run.run_id, {"lr": 0.1, "epochs": "3"})
    store.log_params(run.run_id, {"lr": 0.2})
    store.log_params(run.run_id, {"lr": 0.1})
    assert store.get_run(run.run_id).params == {"epochs": "3", "lr": 0.1}
    store.log_params(run.run_id, {"lr": 0.3})
    assert store.get_run(run.run_id).params["lr"] == 0.3
    mlflow_run = _mlflow_run(mlflow_client, store, run.run_id)
    assert mlflow_run.data.params["lr"] == "0.1"  # MLflow keeps a param's first value
    assert mlflow_run.data.tags["orchestrack.param.lr"] == "0.3"
    # A value whose MLflow text reads back as another type has its tag from the start: a later value with
    # the same text but its own type replaces that tag, with no read of the run just made.
    typed = store.open_run(make_record("params/typed", params={"epochs": "3", "seed": 7}))
    store.log_params(typed.run_id, {"epochs": 3, "seed": "7"})
    assert store.get_run(typed.run_id).params == {"epochs": 3, "seed": "7"}


def test_a_param_another_writer_set_meanwhile_is_read_and_kept_as_changed(store: MlflowStore, server: MlflowServer,
                                                                           mlflow_client: Any) -> None:
    """Params are told new from changed by this instance's fresh read of the run; when another writer set one
    since, MLflow refuses the write, and the run is read and the params written again: nothing is lost."""
    run = store.open_run(make_record("params/race"))
    other = MlflowStore(server.url, experiment=store.experiment_template, claims=store.claims)
    other.log_params(run.run_id, {"lr": 0.1})
    calls = _requests_of(store)
    store.log_params(run.run_id, {"lr": 0.2, "epochs": 3})
    assert calls == ["runs/log-batch", "runs/get", "runs/log-batch"]
    assert store.get_run(run.run_id).params == {"lr": 0.2, "epochs": 3}
    assert _mlflow_run(mlflow_client, store, run.run_id).data.params == {"lr": "0.1", "epochs": "3"}
    calls.clear()
    store.log_params(run.run_id, {"lr": 0.1})  # changed back: what the read above found decides
    assert calls == ["runs/log-batch"] and store.get_run(run.run_id).params == {"lr": 0.1, "epochs": 3}


def test_every_page_of_task_runs_is_read(store: MlflowStore) -> None:
    store.page_size = 25
    run = store.open_run(make_record("pages/1"))
    attempts = [TaskAttempt(task_id=f"map[{i}]", name="map", attempt=1, status=TaskStatus.SUCCEEDED,
                            started_at=utcnow()) for i in range(120)]
    store.record_tasks(run.run_id, attempts)
    assert len(store.get_run(run.run_id).tasks) == 120
    assert len(store.get_progress(run.run_id)[1]) == 120


def test_a_task_finished_by_several_writers_at_once_is_finished_in_mlflow(store: MlflowStore,
                                                                         mlflow_client: Any) -> None:
    """Prefect's task process and the flow's observer both report a task's end, often at the same instant:
    every task run ends FINISHED in MLflow, never left RUNNING beside a "succeeded" tag."""
    import threading

    run = store.open_run(make_record("finish-race/1"))
    started = utcnow()
    running = [TaskAttempt(task_id=f"t{i}", name="t", attempt=1, status=TaskStatus.RUNNING, started_at=started)
               for i in range(40)]
    store.record_tasks(run.run_id, running)
    finished = [a.model_copy(update={"status": TaskStatus.SUCCEEDED, "ended_at": utcnow()}) for a in running]
    writers = [MlflowStore(store.uri, experiment=store.experiment_template, claims=store.claims) for _ in range(6)]
    barrier = threading.Barrier(len(writers))

    def finish(writer: MlflowStore) -> None:
        barrier.wait()
        writer.record_tasks(run.run_id, finished)

    threads = [threading.Thread(target=finish, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    children = _children(mlflow_client, _mlflow_run(mlflow_client, store, run.run_id))
    chosen = {attempt.task_id: child_id for (_, _), (child_id, attempt) in
              store._children(*store._ids(run.run_id)).items()}
    assert len(chosen) == 40
    statuses = {c.info.run_id: (c.info.status, c.data.tags["orchestrack.status"]) for c in children}
    assert {task: statuses[child] for task, child in chosen.items()} == {
        f"t{i}": ("FINISHED", "succeeded") for i in range(40)}
    assert {task.status for task in store.get_run(run.run_id).tasks} == {TaskStatus.SUCCEEDED}


def test_a_token_never_appears_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-Never-Logged-7")
    from tests.servers import free_port

    client = MlflowRestClient(f"http://127.0.0.1:{free_port()}", attempts=1)
    with pytest.raises(StoreError) as caught:
        client.call("GET", "experiments/get-by-name", experiment_name="x")
    assert "tok-Never-Logged-7" not in str(caught.value)
    assert "cannot reach the MLflow tracking server" in str(caught.value)


def test_the_run_page_is_the_mlflow_ui(tracked: MlflowStore, server: MlflowServer) -> None:
    run = orchestrack.start_run(key="ui/1", pipeline="ui")
    mlflow_run_id, experiment_id = tracked._ids(run.run_id)
    assert run.url == f"{server.url}/#/experiments/{experiment_id}/runs/{mlflow_run_id}"
    with urllib.request.urlopen(run.url.split("#")[0], timeout=10) as page:  # MLflow serves its UI there
        assert page.status == 200 and b"<html" in page.read(2000).lower()


def test_the_cli_works_against_mlflow(tracked: MlflowStore, tmp_path: Path) -> None:
    ok = orchestrack.start_run(key="cli/ok", pipeline="cli", owner="me")
    with ok.task("train"):
        orchestrack.log_metrics({"auc": 0.9})
    ok.finish()
    bad = orchestrack.start_run(key="cli/bad", pipeline="cli", owner="me")
    with pytest.raises(FileNotFoundError), bad.task("load"):
        raise FileNotFoundError("s3://data/missing.parquet")
    bad.finish()
    env = {"ORCHESTRACK_TRACKING_URI": tracked.uri, "ORCHESTRACK_MLFLOW__EXPERIMENT": tracked.experiment_template,
           "ORCHESTRACK_MLFLOW__CLAIMS": tracked.claims, "PATH": str(Path(sys.executable).parent),
           "HOME": str(tmp_path)}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "orchestrack", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = cli("runs", "--pipeline", "cli")
    assert "cli/ok" in listed and "cli/bad" in listed
    assert "data-error" in cli("failures")
    shown = cli("show", "cli/bad")
    assert "data-error" in shown and "load" in shown
    assert "auc" in cli("show", ok.run_id[:10])
    compared = cli("compare", "cli/ok", "cli/bad")
    assert "auc" in compared and "data-error" in compared


def _open_at_once(url: str, experiment: str, claims: str, key: str, barrier: Any, results: Any) -> None:
    store = MlflowStore(url, experiment=experiment, claims=claims)
    record = make_record(key)
    barrier.wait()
    stored = store.open_run(record)
    store.record_tasks(stored.run_id, [TaskAttempt(task_id=f"worker-{multiprocessing.current_process().name}",
                                                   name="worker", attempt=1, status=TaskStatus.SUCCEEDED)])
    results.put(store._ids(stored.run_id))


@pytest.mark.parametrize("server_name", ["mlflow3-postgresql", "mlflow2-sqlite"])
def test_sixteen_processes_opening_one_key_at_once_make_one_mlflow_run(
        server_name: str, mlflow_servers: dict[str, MlflowServer]) -> None:
    from mlflow import MlflowClient

    server = mlflow_servers[server_name]
    delete_orchestrack_experiments(server.url)
    unique = f"{time.time_ns()}"
    key = f"race/{unique}"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_open_at_once, args=(server.url, f"race-{unique}", f".claims-{unique}", key,
                                                             barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
        assert process.exitcode == 0
    opened = {results.get(timeout=5) for _ in processes}
    assert len(opened) == 1  # every process got the same MLflow run
    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(f"race-{unique}")
    runs = client.search_runs([experiment.experiment_id], "tags.`orchestrack.record` = 'run'")
    assert [r.info.run_id for r in runs] == [next(iter(opened))[0]]
    assert len(_children(client, runs[0])) == PROCESSES
    claim = client.get_experiment_by_name(f".claims-{unique}/{make_record(key).run_id}")
    assert claim.lifecycle_stage == "deleted"  # hidden from the UI, its name still taken


def test_a_claim_left_by_a_dead_opener_is_taken_over(store: MlflowStore, mlflow_client: Any) -> None:
    record = make_record("orphan/1")
    # An opener that died right after claiming: the claim exists, with no MLflow run id in it.
    mlflow_client.create_experiment(f"{store.claims}/{record.run_id}")
    store.claim_wait_s = 1.0
    opened = store.open_run(record)
    assert opened.key == "orphan/1"
    second = mlflow_client.get_experiment_by_name(f"{store.claims}/{record.run_id}.2")
    assert second is not None and second.lifecycle_stage == "deleted"
    fresh = MlflowStore(store.uri, experiment=store.experiment_template, claims=store.claims)
    assert fresh._ids(record.run_id) == store._ids(record.run_id)


def test_an_outage_journals_writes_and_they_land_when_it_is_back(
        store: MlflowStore, monkeypatch: pytest.MonkeyPatch, mlflow_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    forwarder = Forwarder(int(store.uri.rsplit(":", 1)[1]))
    through = f"http://127.0.0.1:{forwarder.port}"
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", through)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__EXPERIMENT", store.experiment_template)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__CLAIMS", store.claims)
    monkeypatch.delenv("ORCHESTRACK_STRICT")  # the fail-open path: the task keeps its own outcome
    caplog.set_level(logging.DEBUG, "orchestrack")
    run = orchestrack.start_run(key="outage/1", pipeline="outage")
    forwarder.cut()
    with run.task("train"):  # MLflow is unreachable: the task still runs and succeeds
        orchestrack.log_metrics({"auc": 0.93})
    assert "writes wait in" in caplog.text and "journal" in caplog.text
    assert orchestrack.waiting_writes(run.run_id)
    forwarder.restore()
    # The courier finds the server back and delivers the rest (this store's: couriers of earlier tests'
    # servers, gone for good, still hold their writes).
    assert delivery.settle(120, while_down=True, uri=through)
    assert orchestrack.waiting_writes(run.run_id) == {}
    record = orchestrack.get_run("outage/1")
    assert record.metrics == {"auc": 0.93}
    assert [(t.task_id, t.status) for t in record.tasks] == [("train", "succeeded")]
    mlflow_run = _mlflow_run(mlflow_client, store, record.run_id)
    assert mlflow_run.data.metrics["auc"] == 0.93 and mlflow_run.data.metrics["tasks/train/auc"] == 0.93


def test_leases_renew_and_reap_on_mlflow(tracked: MlflowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewed lease keeps its attempt (and its start) on MLflow; an expired one elsewhere is reaped."""
    from datetime import timedelta

    monkeypatch.setenv("ORCHESTRACK_LEASE_S", "3")  # renewed every second: a margin for slow MLflow writes
    run = orchestrack.start_run(key="mlflow/leases", pipeline="leases")
    alive = run.start_task("alive")
    first = next(a for a in orchestrack.get_run("mlflow/leases").tasks if a.task_id == "alive")
    tracked.record_tasks(run.run_id, [TaskAttempt(
        task_id="lost", name="lost", attempt=1, status=TaskStatus.RUNNING, started_at=utcnow(),
        lease_expires_at=utcnow() - timedelta(seconds=1), lease_holder="gpu-node-7:4242")])
    deadline = time.time() + 10
    while next(a for a in orchestrack.get_run("mlflow/leases").tasks
               if a.task_id == "alive").lease_expires_at == first.lease_expires_at:
        assert time.time() < deadline, "the lease was never renewed"
        time.sleep(0.2)
    reaped = orchestrack.reap()
    assert [(r.key, r.closed, [a[0] for a in r.attempts]) for r in reaped] == [("mlflow/leases", False, ["lost"])]
    by_task = {a.task_id: a for a in orchestrack.get_run("mlflow/leases").tasks}
    assert by_task["alive"].status is TaskStatus.RUNNING and by_task["alive"].started_at == first.started_at
    assert by_task["alive"].lease_expires_at > first.lease_expires_at  # type: ignore[operator]
    assert by_task["lost"].status is TaskStatus.FAILED and by_task["lost"].failure is not None
    assert by_task["lost"].failure.detail == "heartbeat-lost"
    run.end_task(alive)
    record = run.finish()
    assert record is not None and record.status.value == "failed" and record.failure is not None
    assert record.failure.reason.value == "infra-error"
    assert orchestrack.reap() == []
