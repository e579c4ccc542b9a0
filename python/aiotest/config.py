"""Config files: Locust's ``~/.locust.conf`` and ``./locust.conf``, then
``~/.aiotest.conf`` and ``./aiotest.conf``, then ``[tool.locust]`` and
``[tool.aiotest]`` in ``./pyproject.toml``, read in that order (later wins;
Locust's ``locustfile`` key is ``aiotestfile``).

``aiotest.conf`` uses Locust's ``locust.conf`` form: ``key = value`` lines,
``#`` comments, and ``[a, b]`` for lists. Keys are option names without the
dashes, e.g. ``spawn-rate = 10`` or ``headless = true``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

FileValue = tuple[str, str, list[str]]


def _as_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def read_conf(path: str) -> list[FileValue]:
    """``(source, key, values)`` triples from a ``locust.conf``-style file.

    Raises:
        ConfigError: A line that is not ``key = value``.
    """
    out: list[FileValue] = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if (
                not line
                or line.startswith(("#", ";"))
                or (line.startswith("[") and "=" not in line)
            ):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ConfigError(f"{path}:{number}: expected `key = value`, got {line!r}")
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                values = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            else:
                values = [value.strip("'\"")]
            out.append((path, key.strip(), values))
    return out


def read_pyproject(path: str, tool: str = "aiotest") -> list[FileValue]:
    """``(source, key, values)`` triples from ``[tool.aiotest]`` (or
    ``[tool.<tool>]``, e.g. Locust's ``[tool.locust]``).

    Raises:
        ConfigError: The file is not valid TOML.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    section = data.get("tool", {}).get(tool, {})
    source = f"{path} [tool.{tool}]"
    return [(source, key, _as_values(value)) for key, value in section.items()]


def config_file_values(
    cwd: str | None = None, args: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> list[FileValue]:
    """Values from every config file present, earliest (weakest) first; the
    last is the ``--config FILE`` (or ``AIOTEST_CONFIG``) of ``args``
    (without the program name) or ``environ``.

    Raises:
        ConfigError: The ``--config`` file is missing, or a file is malformed.
    """
    cwd = cwd or os.getcwd()
    values: list[FileValue] = []
    explicit = _config_path(args, os.environ if environ is None else environ)
    # Locust's files first: aiotest's own win where both set an option.
    for name in ("locust", "aiotest"):
        home_conf = os.path.expanduser(f"~/.{name}.conf")
        for conf in (home_conf, os.path.join(cwd, f"{name}.conf")):
            if os.path.isfile(conf):
                values += read_conf(conf)
    pyproject = os.path.join(cwd, "pyproject.toml")
    if os.path.isfile(pyproject):
        values += read_pyproject(pyproject, "locust") + read_pyproject(pyproject)
    if explicit is not None:
        if not os.path.isfile(explicit):
            raise ConfigError(f"--config {explicit}: no such file: give the path of a config file")
        values += read_conf(explicit)
    return [(source, _OURS.get(key, key), vals) for source, key, vals in values]


def _config_path(args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """``--config``'s value before the full parse (which agrees with it)."""
    path = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path if path is not None else environ.get("AIOTEST_CONFIG") or None


#: Locust's names of options that aiotest names otherwise.
_OURS = {"locustfile": "aiotestfile"}
