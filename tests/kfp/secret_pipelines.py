"""A pipeline handed known secrets (tests/kfp/test_secret_sweep.py; components need their source in a
real module file). The components import tests.seeded_secrets: the test puts the checkout on
PYTHONPATH for the component subprocesses."""

# No `from __future__ import annotations`: kfp reads component annotations at runtime.

from kfp import dsl

from orchestrack import kfp as otk
from tests.seeded_secrets import BEARER, DB_URL, PARAM_PASSWORD, SECRET_LOG


@otk.component(base_image="python:3.11", packages_to_install=[])
def seed(db_password: str, dsn: str, header: str, notes: str, model: dsl.Output[dsl.Model]) -> str:
    import tempfile
    from pathlib import Path

    import orchestrack
    from tests.seeded_secrets import seed_through_api

    run = orchestrack.active_run()
    assert run is not None
    seed_through_api(run, Path(tempfile.mkdtemp(prefix="secret-sweep-")))
    with open(model.path, "w") as handle:
        handle.write("weights")
    return "seeded"


@otk.component(base_image="python:3.11", packages_to_install=[])
def crash(dsn: str) -> None:
    from tests.seeded_secrets import secret_error

    raise secret_error()


@otk.pipeline(name="secret-sweep", purpose="tuning", packages_to_install=[])
def leaky(db_password: str = PARAM_PASSWORD, dsn: str = DB_URL, header: str = f"Authorization: Bearer {BEARER}",
          notes: str = SECRET_LOG) -> None:
    seeded = seed(db_password=db_password, dsn=dsn, header=header, notes=notes)
    crash(dsn=dsn).after(seeded)
