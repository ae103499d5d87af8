#!/usr/bin/env bash
# The Airflow half of the main job: the example DAG run once by real Airflow 3 (dag.test() on a
# fresh SQLite metadata DB), tracked into the embedded store; then show its run.
# Expects `airflow`, `python` and `orchestrack` on PATH (scripts/run-example sets that up).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
export AIRFLOW_HOME="$home" AIRFLOW__CORE__DAGS_FOLDER="$home/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$home/dags"
cp "$here/churn_train_dag.py" "$here/churn_train.yaml" "$home/dags/"
echo "== Airflow: migrating a fresh metadata DB, then dag.test() of examples/airflow/churn_train_dag.py"
airflow db migrate > "$home/migrate.log" 2>&1 || { cat "$home/migrate.log"; exit 1; }
python "$home/dags/churn_train_dag.py" > "$home/dag-test.log" 2>&1 || { tail -n 40 "$home/dag-test.log"; exit 1; }
key=$(orchestrack runs --pipeline churn_train --limit 1 --json | python -c 'import json, sys; print(json.load(sys.stdin)[0]["key"])')
orchestrack show "$key"
