"""Config files carried into a KFP pipeline run (``otk.pipeline(configs=[...])``).

KFP components run in containers where the pipeline author's files do not exist. So each config is
read where the pipeline is defined (the author's machine, at compile time), its stored copy (secrets
already masked by :func:`orchestrack.configs.read_config`) is packed into one text that becomes an
environment variable of the task that closes the run, and that task writes the files back out and
logs them with :meth:`orchestrack.Run.log_config` (``source=`` the original path).

The text is JSON, compressed and base64-encoded, and at most :data:`MAX_EMBEDDED` characters long:
Linux refuses a single environment variable (or argument) longer than 128 KiB: the task would not
even start.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orchestrack
from orchestrack.errors import InvalidInputError
from orchestrack.guard import fail_open

#: The longest packed text (characters) embedded in a compiled pipeline: below Linux's 128 KiB limit
#: on one command-line argument, with room for the task's other inputs.
MAX_EMBEDDED = 64 * 1024
_FORMAT = 1


def pack_configs(paths: Sequence[str | os.PathLike[str]], *, pipeline: str, func: Callable[..., Any]) -> str:
    """The config files ``paths`` as one text for the closing task (``""`` for none). A relative path
    is looked up next to ``func``'s source file, then in the working directory.

    Example::

        packed = pack_configs(["conf/train.yaml"], pipeline="nightly-train", func=nightly)
    """
    from orchestrack.configs import config_paths, find_config, read_config, source_folder

    where = f"otk.pipeline {pipeline!r} configs="
    beside = source_folder(func)
    entries: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    for given in config_paths(paths, where):
        path = find_config(given, beside, f"{where}; configs are read on the machine that defines the pipeline")
        config, files = read_config(path, name=path.name, where=where)
        if config.name in sizes:
            raise InvalidInputError(
                f"{where} has two configs named {config.name!r} (the file or folder name names the run's "
                f"artifact configs/{config.name}); rename one of them")
        sizes[config.name] = sum(len(content) for content in files.values())
        entries.append({"name": config.name, "source": config.source, "folder": path.is_dir(),
                        "files": {_runtime_name(relative, content, path): _encode(content)
                                  for relative, content in files.items()}})
    if not entries:
        return ""
    document = json.dumps({"format": _FORMAT, "configs": entries}, sort_keys=True).encode()
    packed = base64.b64encode(zlib.compress(document, 9)).decode("ascii")
    if len(packed) > MAX_EMBEDDED:
        listed = ", ".join(f"{name!r} {size} bytes" for name, size in sizes.items())
        largest = max(sizes, key=lambda name: sizes[name])
        raise InvalidInputError(
            f"{where}: the config files ({listed}) pack into {len(packed)} characters (compressed, base64), over "
            f"the limit of {MAX_EMBEDDED} that orchestrack embeds in a compiled pipeline (it travels in an "
            f"environment variable of a task, which Linux limits to 128 KiB); leave {largest!r} out of "
            "configs= and log it with orchestrack.log_config inside a component whose image has it")
    return packed


def unpack_configs(packed: str) -> list[dict[str, Any]]:
    """The config entries of a packed text: ``name``, ``source``, ``folder`` and ``files``
    (relative name -> bytes)."""
    try:
        document = json.loads(zlib.decompress(base64.b64decode(packed.encode("ascii"), validate=True)))
    except (ValueError, binascii.Error, zlib.error) as err:
        raise InvalidInputError(f"the closing task's packed configs are not what otk.pipeline packs ({err}); "
                                "recompile the pipeline with this orchestrack version") from err
    found = document.get("format") if isinstance(document, dict) else type(document).__name__
    if found != _FORMAT:
        raise InvalidInputError(f"the closing task's packed configs have format {found!r}, this orchestrack "
                                f"reads format {_FORMAT}; recompile the pipeline with this orchestrack version")
    return [{**entry, "files": {relative: _decode(content) for relative, content in entry["files"].items()}}
            for entry in document["configs"]]


@fail_open("KFP closing task")
def log_packed_configs(run: orchestrack.Run, packed: str) -> None:
    """Write the packed configs to a temporary folder and log each with the run (each on its own:
    one that fails is logged and the others are still recorded; strict mode raises)."""
    entries = unpack_configs(packed)
    with tempfile.TemporaryDirectory(prefix="orchestrack-kfp-configs-") as folder:
        for index, entry in enumerate(entries):
            _log_one(run, entry, Path(folder) / str(index))


@fail_open("KFP closing task")
def _log_one(run: orchestrack.Run, entry: dict[str, Any], base: Path) -> None:
    files: dict[str, bytes] = entry["files"]
    for relative in files:
        parts = Path(relative).parts
        if Path(relative).is_absolute() or ".." in parts:
            raise InvalidInputError(f"config {entry['name']!r}: the packed file name {relative!r} leaves its folder")
    root = base / entry["name"] if entry["folder"] else base
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    path = root if entry["folder"] else root / next(iter(files))
    run.log_config(path, name=entry["name"], source=entry["source"])


def _runtime_name(relative: str, content: bytes, original: Path) -> str:
    """The name a stored file gets in the container: a TOML file whose secrets were masked was written
    back as JSON (the standard library cannot write TOML), so it must be read back as JSON."""
    if not relative.lower().endswith(".toml"):
        return relative
    file = original / relative if original.is_dir() else original
    return relative if content == file.read_bytes() else f"{relative}.json"


def _encode(content: bytes) -> dict[str, str]:
    try:
        return {"text": content.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(content).decode("ascii")}


def _decode(content: dict[str, str]) -> bytes:
    return content["text"].encode("utf-8") if "text" in content else base64.b64decode(content["base64"])
