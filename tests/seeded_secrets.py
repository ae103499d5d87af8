"""Known secrets to seed through every path orchestrack records, and a search of everything written.

Each secret is distinct and made of letters and digits only, so it reads the same in SQLite pages,
JSON, URL-encoded MLflow requests, S3 objects and log lines: one byte search finds it anywhere. The
secret-sweep tests (tests/*/test_secret_sweep.py) seed them all, then read every byte their run left
behind and expect zero hits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

AWS_KEY_ID = "AKIA" + "SWEEPQ7SEED0XYZ1"  # an access key id: AKIA + 16 characters
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiSweepSeedKey01"  # its secret key (caught by its name)
BEARER = "sweepBearerTok0123456789abcdef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzd2VlcFNlZWQifQ.c3dlZXBKd3RTaWduYXR1cmVTZWVk"
JWT_SIGNATURE = JWT.rsplit(".", 1)[1]
PEM_BODY = "MIIEsweepPemBody0123456789abcdefSEED"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nQmFzZTY0U3dlZXBTZWVkTGluZTI=\n-----END RSA PRIVATE KEY-----"
DB_PASSWORD = "S3cr3tPwSweepSeed"
DB_URL = f"postgresql://user:{DB_PASSWORD}@db.internal:5432/warehouse"
GITHUB_TOKEN = "ghp_" + "sweepSeed0123456789abcdefghijKLMN"
PARAM_PASSWORD = "paramPwSweepSeed42"  # under the param name db_password
ENV_TOKEN = "envTokenSweepSeed77"  # the value of the environment variable MY_API_TOKEN
EXCEPTION_SECRET = "excPwSweepSeed99"  # raised inside an exception message (password=...)
TRACEBACK_TOKEN = "tbTokenSweepSeed55"  # in a log's traceback (api_token: ...)

#: What to search for: the secret part of each seed (a JWT by its signature, a key block by its body).
SEEDS: dict[str, str] = {
    "aws access key id": AWS_KEY_ID, "aws secret key": AWS_SECRET, "bearer token": BEARER,
    "jwt": JWT_SIGNATURE, "private key": PEM_BODY, "url password": DB_PASSWORD, "github token": GITHUB_TOKEN,
    "db_password param": PARAM_PASSWORD, "MY_API_TOKEN env var": ENV_TOKEN, "exception message": EXCEPTION_SECRET,
    "traceback": TRACEBACK_TOKEN,
}

#: A text that holds every seed the ways logs and messages show them.
SECRET_TEXT = "\n".join([
    f"connecting to {DB_URL}",
    f"aws_access_key_id={AWS_KEY_ID} aws_secret_access_key={AWS_SECRET}",
    f"headers: {{'Authorization': 'Bearer {BEARER}'}}",
    f"jwt {JWT}",
    f"git clone https://x-access-token:{GITHUB_TOKEN}@github.com/org/repo.git and {GITHUB_TOKEN}",
    f"MY_API_TOKEN={ENV_TOKEN}",
    f"db_password: {PARAM_PASSWORD}",
    PEM,
])

#: A failing task's log: a traceback whose frames and message hold secrets.
SECRET_LOG = "\n".join([
    "INFO starting the load",
    f"DEBUG env: MY_API_TOKEN={ENV_TOKEN} PGPASSWORD={DB_PASSWORD}",
    "Traceback (most recent call last):",
    '  File "/work/train.py", line 12, in load',
    f"    client = Client(api_token: {TRACEBACK_TOKEN})",
    PEM,
    f"ConnectionError: could not reach {DB_URL} with password={EXCEPTION_SECRET} "
    f"(Authorization: Bearer {BEARER}, key {AWS_KEY_ID})",
])


def secret_error() -> RuntimeError:
    """An exception, raised and chained, whose messages hold secrets (its traceback is live)."""
    try:
        try:
            raise KeyError(f"token={GITHUB_TOKEN} jwt={JWT}")
        except KeyError as inner:
            raise RuntimeError(f"could not connect to {DB_URL}: password={EXCEPTION_SECRET} "
                               f"key {AWS_KEY_ID} Bearer {BEARER}\n{PEM}") from inner
    except RuntimeError as error:
        return error


def hits(data: bytes | str, where: str) -> list[str]:
    """``seed label in where`` for each seed found in ``data``."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [f"{label} in {where}" for label, seed in SEEDS.items() if seed.encode() in raw]


def sweep_files(*roots: Path | str, skip: Iterable[Path] = ()) -> list[str]:
    """Every seed found in every file under ``roots`` (SQLite db, -wal and -shm files, spool and
    journal files, artifacts, logs): read byte for byte, nothing skipped but ``skip``."""
    skipped = {Path(path).resolve() for path in skip}
    found: list[str] = []
    for root in map(Path, roots):
        if not root.exists():
            continue
        files = [root] if root.is_file() else [Path(folder) / name for folder, _, names in os.walk(root)
                                                for name in names]
        for path in files:
            if path.resolve() in skipped or path.is_symlink() or not path.is_file():
                continue
            try:
                found += hits(path.read_bytes(), str(path))
            except OSError:  # a file removed while walking (a SQLite -shm at close)
                continue
    return found


def sweep_texts(texts: Mapping[str, str | bytes]) -> list[str]:
    """Every seed found in named texts (captured logs, command output, API answers)."""
    return [hit for where, text in texts.items() for hit in hits(text, where)]


def seed_through_api(run: object, folder: Path) -> None:
    """Every recording call of a run handed secrets, by name and by shape: params, tags, a data set
    (URI, filters, leakage note), a config file, a prompt, LLM settings, features, a metric slice, an
    artifact. ``run`` is an :class:`orchestrack.Run` (typed loosely: adapters' tests import this early)."""
    import orchestrack

    assert isinstance(run, orchestrack.Run)
    by_shape = {"conn": DB_URL, "header": f"Authorization: Bearer {BEARER}", "gh": GITHUB_TOKEN, "jwt_value": JWT,
                "pem": PEM, "aws_id": AWS_KEY_ID, "blob": SECRET_TEXT, "nested": {"url": DB_URL, "list": [JWT]}}
    run.log_params({"db_password": PARAM_PASSWORD, "aws_secret_access_key": AWS_SECRET, **by_shape, "lr": 0.1})
    run.set_tags({"api_token": ENV_TOKEN, **{f"t_{key}": value for key, value in by_shape.items()}})
    data = folder / "train.csv"
    data.write_text("a,b\n1,2\n")
    run.log_dataset("train", data, filters={"password": PARAM_PASSWORD, "where": f"token={GITHUB_TOKEN}"},
                    leakage_check={"status": "failed", "note": f"Bearer {BEARER} leaked"})
    run.log_dataset("warehouse", DB_URL, version=f"v1 {AWS_KEY_ID}", filters=f"jwt = '{JWT}'")
    config = folder / "train.yaml"
    config.write_text(f"# deploy with {GITHUB_TOKEN}\nlr: 0.1\ndb:\n  password: {PARAM_PASSWORD}\n  url: {DB_URL}\n"
                      f"aws:\n  key: {AWS_KEY_ID}\n  secret_access_key: {AWS_SECRET}\nheader: Bearer {BEARER}\n")
    run.log_config(config)
    run.log_prompt("answer", f"Use key {AWS_KEY_ID} and {JWT}.\n{PEM}\nQ: {{question}}")
    run.log_llm(provider="openai", model="gpt-4o-mini", retrieval={"endpoint": DB_URL, "api_key": ENV_TOKEN},
                api_token=ENV_TOKEN, base_url=f"https://u:{DB_PASSWORD}@llm.internal/v1")
    run.log_features(["age"], target="churned", joins=[f"orders JOIN {DB_URL}"],
                     transformations=[f"lookup(Bearer {BEARER})"], feature_store=f"feast:{GITHUB_TOKEN}",
                     password=PARAM_PASSWORD, note=JWT)
    run.log_metrics({"auc": 0.9}, slice={"token": ENV_TOKEN})
    run.log_metrics({"auc": 0.8}, slice=f"region=eu,auth={GITHUB_TOKEN}")
    artifact = folder / "model.txt"
    artifact.write_text("weights")
    run.log_artifact(artifact)
