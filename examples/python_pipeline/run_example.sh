#!/usr/bin/env bash
# The main job: one day whose data exists (the run succeeds and passes its quality gate, and its
# model is promoted) and one whose partition is missing (the run fails, labelled data-error), both
# tracked into the embedded store; then show both runs and the model's versions.
# Expects `python` and `orchestrack` on PATH (scripts/run-example sets that up).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
pipeline=(python "$here/churn_pipeline.py" --data-dir "$work/data")
"${pipeline[@]}" --day 2026-11-28 --write-sample-data 400

echo "== 2026-11-28 has data: the run succeeds"
good=$("${pipeline[@]}" --day 2026-11-28 --purpose baseline --gate "$here/gate.yaml")
echo "== its quality gate passed: promote its model"
orchestrack promote "$good" --model churn --alias champion

echo "== 2026-11-29's partition is missing: the run fails, and says why"
if bad=$("${pipeline[@]}" --day 2026-11-29 --purpose recovery 2>"$work/failed.log"); then
  echo "expected the run for 2026-11-29 to fail" >&2
  exit 1
fi
echo "the pipeline itself failed as it should: $(tail -n 1 "$work/failed.log")"

echo
orchestrack runs --pipeline churn-train --limit 4
orchestrack show "$good"
orchestrack show "$bad"
orchestrack models churn
echo "== from the deployed model back to the run that made it"
orchestrack which models:/churn@champion
