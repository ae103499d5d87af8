"""DAG shapes from Airflow's own examples that our first DAGs lacked (tests/airflow/test_dag_test.py):
a wide mapped task, tasks that skip themselves, and the operator added last rather than first."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator
from orchestrack.versions import installed_release

#: 300 mapped task instances on Airflow 3.3; 20 before, where dag.test() itself costs 1-4 s a task
#: instance (measured untracked: 3.0, 41 instances in 38-45 s; 3.2, 21 in 68-77 s; 3.1 and 3.2 build
#: their in-process execution API anew for every task instance), against about 0.1 s on 3.3. Scale
#: is what the newest minor tests; the older ones test what differs by version.
WIDTH = 300 if (installed_release("apache-airflow-core") or (3, 3, 0)) >= (3, 3, 0) else 20
#: The map indexes whose shard fails (code-error): every 101st, from 50 (from 10 at width 20).
MALFORMED = {n for n in range(WIDTH) if n % 101 == 50 % WIDTH}

with DAG("wide_map", start_date=datetime(2026, 1, 1), schedule=None, catchup=False) as wide_map:
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning")

    @task
    def shard(n: int) -> int:
        if n in MALFORMED:
            raise ValueError(f"shard {n} is malformed")
        import orchestrack

        orchestrack.log_metrics({"rows": float(n)})
        return n

    track >> shard.expand(n=list(range(WIDTH)))

with DAG("skips_itself", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         params={"threshold": 0.5}) as skips_itself:
    prepare = BashOperator(task_id="prepare", bash_command="echo ready")
    exits_99 = BashOperator(task_id="nothing_to_do", bash_command="exit 99")  # Airflow's skip exit code

    @task
    def skip_in_python() -> None:
        from airflow.exceptions import AirflowSkipException

        raise AirflowSkipException("no new data today")

    # The operator last, not first: the run still gets its params and DAG-run facts.
    [prepare >> exits_99, skip_in_python()] >> TrackRunOperator(task_id="orchestrack", purpose="baseline",
                                                                 trigger_rule="all_done")
