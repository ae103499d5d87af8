"""The reference docs stay true to the code: every setting, record field and enum value is documented,
and the record example in docs/record-schema.md is a valid run record."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import pytest
from pydantic import BaseModel

import orchestrack
from orchestrack import record
from orchestrack.policy import SchemaPolicy
from orchestrack.settings import ENV_PREFIX, Settings

# conftest.py chdirs every test to its tmp_path, so the docs are found from this file.
DOCS = Path(__file__).resolve().parents[2] / "docs"

NESTED_MODELS: list[type[BaseModel]] = [
    record.OrchestratorInfo, record.CodeInfo, record.DataSnapshot, record.LeakageCheck, record.Features,
    record.ConfigFile, record.LlmSettings, record.Environment, record.Gpu, record.MetricPoint, record.SeriesPoint,
    record.Artifact, record.TaskAttempt, record.Failure,
]
ENUMS: list[type[Enum]] = [record.FailureReason, record.RunStatus, record.TaskStatus, record.Purpose,
                           record.OrchestratorKind, record.LeakageStatus]


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text under the markdown heading whose title is ``heading``, up to the next heading."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#") and line.lstrip("#").strip().strip("`") == heading:
            body = []
            for following in lines[index + 1:]:
                if following.startswith("#"):
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"docs/record-schema.md has no heading {heading!r}")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented_by_its_env_var(field: str) -> None:
    assert f"`{ENV_PREFIX}{field.upper()}`" in _doc("configuration.md")


@pytest.mark.parametrize("field", sorted(SchemaPolicy.model_fields))
def test_every_policy_field_is_documented_by_its_env_var(field: str) -> None:
    assert f"`{ENV_PREFIX}POLICY__{field.upper()}`" in _doc("configuration.md")


@pytest.mark.parametrize("field", sorted(record.RunRecord.model_fields))
def test_every_run_record_field_is_documented(field: str) -> None:
    assert f"| `{field}` |" in _section(_doc("record-schema.md"), "RunRecord")


@pytest.mark.parametrize(("model", "field"), [(model, field) for model in NESTED_MODELS
                                              for field in sorted(model.model_fields)],
                         ids=lambda value: value.__name__ if isinstance(value, type) else value)
def test_every_nested_field_is_documented_in_its_models_section(model: type[BaseModel], field: str) -> None:
    assert f"| `{field}` |" in _section(_doc("record-schema.md"), model.__name__)


@pytest.mark.parametrize(("enum", "value"), [(enum, member.value) for enum in ENUMS for member in enum],
                         ids=lambda value: value.__name__ if isinstance(value, type) else value)
def test_every_enum_value_is_documented(enum: type[Enum], value: str) -> None:
    assert f"`{value}`" in _doc("record-schema.md")


@pytest.mark.parametrize("reason", [member.value for member in record.FailureReason])
def test_every_failure_reason_has_a_row_in_the_label_table(reason: str) -> None:
    assert f"| `{reason}` |" in _doc("failure-reasons.md")


def test_record_example_is_a_valid_run_record() -> None:
    match = re.search(r"```json\n(.*?)\n```", _doc("record-schema.md"), re.DOTALL)
    assert match is not None, "docs/record-schema.md has no ```json block"
    example = orchestrack.RunRecord.model_validate_json(match.group(1))
    assert example.schema_version == orchestrack.SCHEMA_VERSION
    assert example.run_id == orchestrack.run_id_for(example.key)


def test_documented_limits_match_the_code() -> None:
    from orchestrack import inputs

    configuration = _doc("configuration.md")
    for limit in (inputs.MAX_NAME, inputs.MAX_KEY, inputs.MAX_PARAM_VALUE):
        assert f"**{limit}**" in configuration


def test_documented_defaults_match_the_code() -> None:
    configuration = _doc("configuration.md")
    settings_defaults = Settings.model_fields
    assert f"`{settings_defaults['busy_timeout_s'].default}`" in configuration
    assert f"`{settings_defaults['data_hash_limit_mb'].default}`" in configuration
    policy = SchemaPolicy()
    assert "`[" + ", ".join(f'"{path}"' for path in policy.mandatory) + "]`" in configuration
    assert f"`{policy.name_template}`" in configuration and f"`{policy.name_pattern}`" in configuration


def test_builtin_rule_table_is_the_generated_one() -> None:
    from orchestrack.failure_rules import rules_table

    # Regenerate with: python -m orchestrack.failure_rules --write docs/failure-reasons.md
    assert rules_table() in _doc("failure-reasons.md")
