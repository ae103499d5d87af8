"""Kubeflow Pipelines v2: ``component`` and ``pipeline`` in place of ``dsl.component`` and
``dsl.pipeline``; every pipeline run becomes one tracked run, closed by an exit handler.

Importing this package imports nothing of kfp's until a decorator is used.

Example::

    from kfp import dsl
    from orchestrack import kfp as otk

    @otk.component(base_image="python:3.11", packages_to_install=["orchestrack"])
    def train(epochs: int = 3) -> float: ...

    @otk.pipeline(name="nightly-train", purpose="tuning")
    def nightly(epochs: int = 3):
        train(epochs=epochs)
"""

from __future__ import annotations

from typing import Any

from orchestrack.errors import MissingExtraError

__all__ = ["component", "pipeline", "quality_gate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        try:
            from orchestrack.kfp import decorators
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "kfp":
                raise MissingExtraError(
                    "orchestrack.kfp needs the Kubeflow Pipelines SDK: pip install 'orchestrack[kfp]'") from err
            raise
        return getattr(decorators, name)
    raise AttributeError(f"module 'orchestrack.kfp' has no attribute {name!r}")
