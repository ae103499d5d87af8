"""Config files and prompt templates as part of the run: hashed, parsed into comparable keys, stored.

:func:`read_config` turns a file or folder into a :class:`~orchestrack.record.ConfigFile` and the
bytes to keep as the run's copy. YAML, JSON and TOML files are parsed and flattened to dotted keys
so that ``compare`` can say which keys changed; anything else (and a file that does not parse,
which is kept with the parser's message) is compared by its hash. Secrets are masked in the parsed
values and, when any were found, in the stored copy too: structurally in a parsed file, line by
line (``name = value`` under a secret-looking name, tokens, keys, URL passwords) in a text one. The
hash is always that of the file as read, so it still identifies the file.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from orchestrack.errors import InvalidInputError
from orchestrack.evidence import redact, redact_private_keys
from orchestrack.inputs import MASK, check_name, is_secret_name, masked
from orchestrack.record import ConfigFile, Scalar
from orchestrack.stores.local_artifacts import content_sha256, folder_files

#: At most this many keys of one config are kept in the record (the file itself is always stored).
MAX_KEYS = 2000
#: A value longer than this is cut in the record.
MAX_VALUE = 500
#: Files larger than this are hashed and stored but not parsed.
MAX_PARSE_BYTES = 4 << 20
#: A config (file or folder) larger than this is refused: it is a data set or a model, not a config.
MAX_CONFIG_BYTES = 64 << 20

log = logging.getLogger(__name__)

_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


#: ``name = value`` / ``name: value`` / ``export NAME=value`` lines of a text config.
_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?[\"']?([A-Za-z0-9_.\-]+)[\"']?\s*[:=]\s*)(\S.*?)\s*$")


def _parse(text: str, fmt: str) -> Any:
    if fmt == "yaml":
        import yaml

        documents = list(yaml.safe_load_all(text))  # Kubernetes-style files hold several
        return documents[0] if len(documents) == 1 else _Documents(documents)
    if fmt == "json":
        return json.loads(text)
    return tomllib.loads(text)


def _scalar(value: Any) -> Scalar:
    text: Scalar
    if value is None or isinstance(value, (bool, int, str)):
        text = value
    elif isinstance(value, float):
        text = value if math.isfinite(value) else str(value)
    else:
        text = str(value)  # dates, times and other YAML scalars
    if isinstance(text, str) and len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    return text


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.lr": 0.1, "layers[0].units": 64}`` from nested mappings and lists (an empty one is kept)."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(node, list) and node:
        flat = {}
        for index, value in enumerate(node):
            flat.update(flatten(value, f"{prefix}[{index}]"))
        return flat
    if isinstance(node, (dict, list)):
        return {prefix or "(root)": json.dumps(node)}
    return {prefix or "(root)": node}


def _mask_tree(node: Any, name: str = "") -> tuple[Any, bool]:
    """``node`` with secrets masked, and whether anything was."""
    if isinstance(node, dict):
        changed, result = False, {}
        for key, value in node.items():
            if is_secret_name(key) and not isinstance(value, (dict, list)) and value not in (None, ""):
                result[key], changed = MASK, True
            else:
                result[key], inner = _mask_tree(value, str(key))
                changed = changed or inner
        return result, changed
    if isinstance(node, list):
        items = [_mask_tree(value, name) for value in node]
        return type(node)(v for v, _ in items), any(c for _, c in items)
    if isinstance(node, str):
        cleaned = masked(name if is_secret_name(name) else "", node)
        return cleaned, cleaned != node
    return node, False


class _Documents(list):  # type: ignore[type-arg]
    """The documents of a multi-document YAML file (flattened as ``[0].key``, written back as such)."""


def _render(tree: Any, fmt: str) -> bytes:
    """A masked tree written back in its format (TOML, which the standard library cannot write, as JSON)."""
    if fmt == "yaml":
        import yaml

        if isinstance(tree, _Documents):
            return yaml.safe_dump_all(list(tree), sort_keys=False, allow_unicode=True).encode()
        return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True).encode()
    return json.dumps(tree, indent=2, ensure_ascii=False, default=str).encode()


def _masked_text(raw: bytes) -> tuple[bytes, bool]:
    """A text config with secrets masked line by line, and whether any were (binary files stay as they are)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw, False
    lines = []
    for line in redact_private_keys(text).splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = _ASSIGNMENT.match(body)
        if match is None:
            body = redact(body)
        else:  # judge the name as param names are judged (max_tokens is no secret), the value by its shape
            value = MASK if is_secret_name(match.group(2)) else redact(match.group(3))
            body = body if value == match.group(3) else match.group(1) + value
        lines.append(body + line[len(line.rstrip("\r\n")):])
    masked_text = "".join(lines)
    return (masked_text.encode("utf-8"), True) if masked_text != text else (raw, False)


def _parsed_file(path: Path, fmt: str) -> tuple[Any, bytes, bool] | str | None:
    """The parsed tree (secrets masked), the bytes to store (its masked rendering when secrets were
    found, else the file's own) and whether any were; the parser's message for a file that does not
    parse; ``None`` for a file too large to parse."""
    raw = path.read_bytes()
    if len(raw) > MAX_PARSE_BYTES:
        return None
    try:
        tree = _parse(raw.decode("utf-8"), fmt)
    except Exception as err:
        return f"not valid {fmt.upper()}: {' '.join(str(err).split())[:300]}"
    cleaned, changed = _mask_tree(tree)
    if changed:
        return cleaned, _render(cleaned, fmt), True
    copy, in_text = _masked_text(raw)  # a secret in a comment, which the parsed tree does not hold
    return cleaned, copy, in_text


def read_config(path: str | os.PathLike[str], *, name: str | None = None, kind: str = "config",
                where: str = "log_config") -> tuple[ConfigFile, dict[str, bytes]]:
    """The record of a config file or folder, and the files to store as its copy (relative name -> bytes)."""
    source = Path(path).expanduser()
    if not source.exists():
        raise InvalidInputError(f"config {str(path)!r} ({where}) does not exist (working directory "
                                f"{Path.cwd()}); give the path of the file or folder the run reads")
    name = check_name(name or source.name, "config name", where)
    sha256, size = content_sha256(source)
    if size > MAX_CONFIG_BYTES:
        raise InvalidInputError(
            f"config {str(path)!r} ({where}) is {size} bytes, over the {MAX_CONFIG_BYTES >> 20} MiB a config may be; "
            "log data with log_dataset and models or other large files with log_artifact")
    files = list(folder_files(source)) if source.is_dir() else [(source.name, source)]
    values: dict[str, Scalar] = {}
    stored: dict[str, bytes] = {}
    redacted, problems = False, []
    for relative, file in files:
        fmt = _FORMATS.get(file.suffix.lower())
        parsed = _parsed_file(file, fmt) if fmt else None
        if not isinstance(parsed, tuple):
            if isinstance(parsed, str):
                problems.append(f"{relative}: {parsed}")
            stored[relative], changed = _masked_text(file.read_bytes())
            redacted = redacted or changed
            continue
        tree, stored[relative], changed = parsed
        redacted = redacted or changed
        prefix = f"{relative}:" if source.is_dir() else ""
        values.update({f"{prefix}{key}": _scalar(value) for key, value in flatten(tree).items()})
    fmt = "folder" if source.is_dir() else "text" if problems else _FORMATS.get(source.suffix.lower(), "text")
    if problems:
        log.warning("config %r (%s) is kept as text and compared by its hash only: %s; fix the file to compare "
                    "its keys between runs", str(path), where, "; ".join(problems))
    complete = len(values) <= MAX_KEYS
    if not complete:
        values = dict(list(values.items())[:MAX_KEYS])
    config = ConfigFile(name=name, kind=kind, format=fmt, source=str(source.resolve()), sha256=sha256,
                        size_bytes=size, values=values, values_complete=complete, redacted=redacted,
                        parse_error="; ".join(problems) or None)
    return config, stored


def config_paths(configs: Any, where: str) -> list[str | os.PathLike[str]]:
    """An adapter's ``configs=`` as a list of paths: one path on its own is a list of one (not of its
    letters); anything else than paths is refused, naming ``where``."""
    paths = [configs] if isinstance(configs, (str, os.PathLike)) else configs
    if isinstance(paths, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) and str(p) for p in paths):
        return list(paths)
    raise InvalidInputError(f"configs {configs!r} ({where}) must be a list of file or folder paths (text or "
                            "pathlib.Path), such as configs=['train.yaml']")


def source_folder(function: Any) -> Path | None:
    """The folder of the file that defines ``function`` (a flow's or pipeline's function), or ``None``
    for one without a source file (typed into a console, a builtin)."""
    try:
        file = inspect.getsourcefile(inspect.unwrap(function))
    except TypeError:
        return None
    return Path(file).resolve().parent if file else None


def find_config(path: str | os.PathLike[str], beside: Path | None, where: str,
                beside_what: str = "the pipeline's source file") -> Path:
    """Where an adapter's ``configs=`` entry is: an absolute path as given; a relative one in the
    folder ``beside`` (the DAG file's, the flow's or the pipeline's source folder: where the
    pipeline's own files sit, whatever the working directory) first, then in the working directory.
    Raises :class:`InvalidInputError` naming every place looked (``beside_what`` names ``beside``)."""
    given = Path(path).expanduser()
    places = [given] if given.is_absolute() else list(dict.fromkeys(
        folder / given for folder in (beside, Path.cwd()) if folder is not None))
    found = next((place for place in places if place.exists()), None)
    if found is None:
        raise InvalidInputError(
            f"config {str(path)!r} does not exist ({where}): looked for {' and '.join(map(str, places))}; put it "
            f"next to {beside_what}, or give its absolute path")
    return found.resolve()
