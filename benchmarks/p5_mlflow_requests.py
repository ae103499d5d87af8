"""P5: the MLflow store's HTTP requests and wall time for one pipeline run against a real ``mlflow server``,
side by side with MLflow's own fluent API logging the same run call by call.

One run, both ways: open; 50 params; three task attempts (``prepare``, ``train``, ``evaluate``); inside
``train`` a training loop of 50 steps logging 4 metrics a step (200 metric points); close. And the same run
alone, with no task attempts (the loop logs into the run), as issue 14 states P5.

- orchestrack: ``start_run`` on the MLflow store (``tracking_uri=http://...``), ``run.log_params`` with the
  50 params, ``with run.task(...)`` per task, ``run.log_metrics({4 metrics}, step=s)`` once a step, ``finish``.
  Each run starts from a fresh store object, as a new pipeline process does (no cached experiment id).
- MLflow (baseline): ``mlflow.set_experiment``, ``mlflow.start_run``, ``mlflow.log_param`` per param, a nested
  ``mlflow.start_run`` per task attempt, ``mlflow.log_metric`` per point, ``end_run``.

orchestrack runs as users run it by default: fail-open (``ORCHESTRACK_STRICT`` off: writes go to the journal
and its courier delivers them together) and every other setting at its default, whatever the environment says
(the test suite turns strict mode on). Requests are counted on the wire, the same way for both: a small
counting HTTP proxy on loopback in front of the server sees every request either client makes (retries
included). Wall time is measured without the proxy, straight to the server, interleaved. Targets: >= 20x
fewer requests; faster (MLflow / orchestrack >= 1).
The facts list the requests of each client by endpoint, and what MLflow's fluent API makes when given the
same batches orchestrack's API is given (``mlflow.log_params`` once, ``mlflow.log_metrics`` once a step).

Without ``--tracking-uri`` the benchmark starts its own MLflow 3 server (SQLite backend, a temporary folder,
a loopback port) from ``ORCHESTRACK_TEST_MLFLOW3_SERVER`` (default: the noxfile's ``.nox/_mlflow3-server``).
Run it from the repository root with an environment that has orchestrack's ``mlflow`` extra and
``mlflow-skinny``:

    ORCHESTRACK_TEST_MLFLOW3_SERVER=$PWD/.nox/_mlflow3-server/bin/mlflow \\
        .nox/mlflow/bin/python -m benchmarks.p5_mlflow_requests [--quick] [--repeats N] [--json PATH] \\
        [--tracking-uri URL]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.measure import Comparison, Report, Target, arguments, finish, interleaved
from orchestrack.settings import load_settings

PARAMS = {f"param_{i:02d}": (i * 0.5 if i % 3 else f"value-{i}") for i in range(50)}
METRIC_KEYS = ("loss", "val_loss", "accuracy", "learning_rate")
STEPS = 50  # x 4 metrics = 200 metric points
TASKS = ("prepare", "train", "evaluate")
PIPELINE = "p5-mlflow-requests"
MLFLOW_EXPERIMENT = "p5-mlflow-fluent"
_ROOT = Path(__file__).resolve().parent.parent
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "content-length", "host"}


def metric_value(key: str, step: int) -> float:
    """The value of ``key`` at ``step`` (the same numbers for both clients)."""
    return round((METRIC_KEYS.index(key) + 1) / (step + 1), 6)


# -- the two clients ----------------------------------------------------------------------------

def orchestrack_run(url: str, tasks: Sequence[str] = TASKS) -> str:
    """One pipeline run through orchestrack's public API into the MLflow store at ``url``; its key. Without
    ``tasks``, the training loop logs into the run itself."""
    import orchestrack
    from orchestrack import stores

    stores.close_all()  # a fresh store, as a new pipeline process has
    key = f"p5/{uuid.uuid4().hex}"
    run = orchestrack.start_run(key=key, owner="bench", purpose="baseline", pipeline=PIPELINE, tracking_uri=url)
    run.log_params(PARAMS)
    for task in tasks:
        with run.task(task):
            if task == "train":
                for step in range(STEPS):
                    run.log_metrics({k: metric_value(k, step) for k in METRIC_KEYS}, step=step)
    if not tasks:
        for step in range(STEPS):
            run.log_metrics({k: metric_value(k, step) for k in METRIC_KEYS}, step=step)
    run.finish()
    return key


def mlflow_run(url: str, *, batched: bool = False, tasks: Sequence[str] = TASKS) -> None:
    """The same run through MLflow's fluent API: a call per param and per metric point (``batched``: the
    batches orchestrack's API is given, ``log_params`` once and ``log_metrics`` once a step); a nested run
    per task attempt."""
    import mlflow

    def train() -> None:
        for step in range(STEPS):
            if batched:
                mlflow.log_metrics({k: metric_value(k, step) for k in METRIC_KEYS}, step=step)
            else:
                for key in METRIC_KEYS:
                    mlflow.log_metric(key, metric_value(key, step), step=step)

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name=f"p5-{uuid.uuid4().hex[:8]}"):
        if batched:
            mlflow.log_params(PARAMS)
        else:
            for name, value in PARAMS.items():
                mlflow.log_param(name, value)
        for task in tasks:
            with mlflow.start_run(run_name=f"{task} #1", nested=True):
                if task == "train":
                    train()
        if not tasks:
            train()


# -- counting requests on the wire --------------------------------------------------------------

class CountingProxy:
    """An HTTP proxy on loopback in front of one server that counts every request by method and path.

    Example::

        with CountingProxy("http://127.0.0.1:5000") as proxy:
            work(proxy.url)
            proxy.counts  # Counter({("POST", "runs/log-batch"): 3, ...})
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"--tracking-uri {upstream!r}: the counting proxy speaks plain http://host:port only")
        self.upstream = (parts.hostname, parts.port or 80)
        self.upstream_host = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.base_path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def counting(self) -> Iterator[collections.Counter[tuple[str, str]]]:
        """The requests made inside the block, by ``(method, endpoint)``."""
        with self._lock:
            self.counts.clear()
        seen: collections.Counter[tuple[str, str]] = collections.Counter()
        yield seen
        with self._lock:
            seen.update(self.counts)

    def _count(self, method: str, path: str) -> None:
        endpoint = path.split("?", 1)[0].split("/api/2.0/mlflow/", 1)[-1]
        with self._lock:
            self.counts[(method, endpoint)] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = proxy.upstream_host
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                proxy._count(self.command, self.path)
                for attempt in range(2):  # the server may have closed an idle keep-alive connection
                    connection = getattr(self, "_upstream", None)
                    if connection is None:
                        connection = self._upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                    try:
                        connection.request(self.command, self.path, body=body, headers=headers)
                        answer = connection.getresponse()
                        data = answer.read()
                        break
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        self._upstream = None
                        if attempt:
                            raise
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


# -- a server of our own ------------------------------------------------------------------------

def mlflow_executable() -> str:
    """The ``mlflow`` of an MLflow 3 server environment: ``ORCHESTRACK_TEST_MLFLOW3_SERVER``, else the noxfile's."""
    executable = os.environ.get("ORCHESTRACK_TEST_MLFLOW3_SERVER") or str(_ROOT / ".nox/_mlflow3-server/bin/mlflow")
    if not Path(executable).exists():
        raise SystemExit(f"no MLflow server executable at {executable}: set ORCHESTRACK_TEST_MLFLOW3_SERVER to the "
                         "`mlflow` of an MLflow 3 environment (`nox -s mlflow` builds one), or pass --tracking-uri")
    return executable


@contextmanager
def mlflow_server(home: Path) -> Iterator[str]:
    """An ``mlflow server`` with a SQLite backend in ``home`` on a free loopback port; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    log = home / "mlflow-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [mlflow_executable(), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
             "--default-artifact-root", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2"], stdout=out, stderr=out, start_new_session=True, env=env, cwd=home)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start (exit {server.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)


# -- the benchmark ------------------------------------------------------------------------------

def _by_endpoint(counts: collections.Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{method} {endpoint}": n for (method, endpoint), n in sorted(counts.items())}


def _measure(url: str, args: argparse.Namespace, report: Report) -> None:
    repeats: int = args.repeats
    cases: dict[str, Callable[[str], object]] = {
        "orchestrack": orchestrack_run, "mlflow": mlflow_run,
        # The run alone, as issue 14 states P5: no task attempts, so no nested runs on either side.
        "orchestrack, run alone": lambda url: orchestrack_run(url, tasks=()),
        "mlflow, run alone": lambda url: mlflow_run(url, tasks=())}
    requests: dict[str, list[float]] = {name: [] for name in cases}
    breakdown: dict[str, collections.Counter[tuple[str, str]]] = {}
    keys: list[str] = []
    # Each client's experiment made once, as on a server the pipeline has written to before (the first run
    # into a new experiment makes two more requests either way); one orchestrack run warms its imports.
    import mlflow

    orchestrack_run(url)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with CountingProxy(url) as proxy:
        # Counted runs first (they also warm both clients up), alternating, through the proxy.
        for _ in range(repeats):
            for name, case in cases.items():
                with proxy.counting() as seen:
                    result = case(proxy.url)
                requests[name].append(float(sum(seen.values())))
                breakdown[name] = seen
                if name.startswith("orchestrack"):
                    keys.append(str(result))
        with proxy.counting() as batched:
            mlflow_run(proxy.url, batched=True)
    # Timed runs straight to the server: the proxy's own cost would weigh on the client that makes more requests.
    # (--quick times each once: its figures mean little, and MLflow's per-call run is the slow part.)
    timings = interleaved({name: (lambda case=case: case(url)) for name in ("orchestrack", "mlflow")
                           for case in (cases[name],)}, 1 if args.quick else repeats, warmup=0)
    server = f"MLflow {mlflow.__version__} fluent"
    report.comparisons.append(Comparison(
        "P5 requests a run: MLflow store vs fluent per call", "orchestrack", server,
        requests["orchestrack"], requests["mlflow"], Target("fewer", 20), unit="requests",
        notes=["counted by a proxy on loopback in front of the server: every request of either client",
               f"each of the {len(TASKS)} task attempts is a nested run on both sides: runs/create and "
               "runs/update, MLflow's least for a run"]))
    report.comparisons.append(Comparison(
        "P5 requests, the run alone (50 params, 200 points)", "orchestrack", server,
        requests["orchestrack, run alone"], requests["mlflow, run alone"], Target("fewer", 20), unit="requests",
        notes=["the same run with no task attempts: issue 14's P5 as stated"]))
    report.comparisons.append(Comparison(
        "P5 wall time a run: MLflow store vs fluent per call", "orchestrack", server,
        timings["orchestrack"], timings["mlflow"], Target("faster", 1.0),
        notes=["straight to the server (no proxy), interleaved"]))
    report.facts["tracking server"] = url
    report.facts["orchestrack requests a run (each repetition)"] = [int(n) for n in requests["orchestrack"]]
    report.facts["MLflow fluent requests a run (each repetition)"] = [int(n) for n in requests["mlflow"]]
    report.facts["orchestrack requests by endpoint (last run)"] = _by_endpoint(breakdown["orchestrack"])
    report.facts["MLflow fluent requests by endpoint (last run)"] = _by_endpoint(breakdown["mlflow"])
    for name, client in (("orchestrack", "orchestrack"), ("mlflow", "MLflow fluent")):
        report.facts[f"{client} requests by endpoint (last run alone)"] = _by_endpoint(breakdown[f"{name}, run alone"])
    report.facts["MLflow fluent requests a run with log_params once and log_metrics once a step"] = sum(
        batched.values())
    settings = load_settings()
    report.facts["orchestrack mode"] = (
        f"{'strict' if settings.strict else 'fail-open'}, default settings (metric_flush_s = "
        f"{settings.metric_flush_s:g} s, delivery_timeout_s = {settings.delivery_timeout_s:g} s): writes journaled "
        "and delivered together; "
        "strict mode (ORCHESTRACK_STRICT=1) writes each call at once, one request or more a call")
    report.facts["orchestrack run keys (counted runs)"] = keys


def _setting(name: str) -> bool:
    return name.startswith("ORCHESTRACK_") and not name.startswith("ORCHESTRACK_TEST_")


@contextmanager
def default_settings() -> Iterator[None]:
    """orchestrack as users run it: no ``ORCHESTRACK_*`` setting from the environment but fail-open mode
    (the test suite turns strict mode on); the environment as it was afterwards."""
    saved = {name: value for name, value in os.environ.items() if _setting(name)}
    for name in saved:
        del os.environ[name]
    os.environ["ORCHESTRACK_STRICT"] = "0"
    try:
        yield
    finally:
        for name in [n for n in os.environ if _setting(n)]:
            del os.environ[name]
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None) -> Report:
    """Run P5 and print its report."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--tracking-uri", default=None, help="an MLflow tracking server to use (default: start one)")
    known, rest = extra.parse_known_args(argv)
    args = arguments(__doc__.splitlines()[0] + " (--tracking-uri URL: use this MLflow server)", rest,
                     repeats=10, quick_repeats=2)
    tracking_uri: str | None = known.tracking_uri
    report = Report("P5", f"one pipeline run into an MLflow server: open, {len(PARAMS)} params, {len(TASKS)} task "
                          f"attempts, {len(METRIC_KEYS) * STEPS} metric points, close", args.quick)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    with tempfile.TemporaryDirectory(prefix="orchestrack-p5-") as work, default_settings():
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        if tracking_uri:
            _measure(tracking_uri.rstrip("/"), args, report)
        else:
            with mlflow_server(Path(work)) as url:
                _measure(url, args, report)
    return finish(report, args)


if __name__ == "__main__":
    main()
