"""Loading an aiotestfile and finding its user classes."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from types import ModuleType

from .exceptions import AiotestFileError
from .shape import LoadTestShape
from .user import User

_loaded: dict[str, ModuleType] = {}


def load_aiotestfile(path: str) -> ModuleType:
    """Imports the aiotestfile at ``path`` as a module, once per process
    (a second call returns the same module).

    Its folder goes on ``sys.path`` first, so it can import its neighbours.

    Raises:
        AiotestFileError: The file is missing, or importing it failed; the
            message names the file and line.
    """
    if not os.path.isfile(path):
        hint = (
            " (the default is aiotestfile.py in the current folder)"
            if path == "aiotestfile.py"
            else ""
        )
        raise AiotestFileError(f"aiotestfile '{path}' not found{hint}: pass the file with -f PATH")
    full = os.path.abspath(path)
    if full in _loaded:
        return _loaded[full]
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(full))[0]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise AiotestFileError(
            f"aiotestfile '{path}' is not a Python module: give a .py file with -f"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{exc.filename}:{exc.lineno}"
        line = (exc.text or "").rstrip()
        raise AiotestFileError(
            f"{where}: syntax error in aiotestfile: {exc.msg}" + (f"\n    {line}" if line else "")
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == full]
        where = f"{full}:{frames[-1].lineno}" if frames else full
        raise AiotestFileError(
            f"{where}: importing the aiotestfile failed: {type(exc).__name__}: {exc}"
        ) from None
    _loaded[full] = module
    return module


def aiotestfile_paths(spec: str) -> list[str]:
    """The files ``-f`` names, as Locust reads it: a comma-separated list,
    each a ``.py`` file or a folder, which stands for the ``.py`` files
    under it (recursively, in name order, without those starting with
    ``_``). A path that does not exist is kept, for the load to report."""
    paths: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if os.path.isdir(part):
            for root, dirs, files in sorted(os.walk(part)):
                dirs.sort()
                paths += [
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.endswith(".py") and not f.startswith("_")
                ]
        else:
            paths.append(part)
    return paths


def load_aiotestfiles(spec: str) -> list[ModuleType]:
    """Imports every file ``-f`` names (see :func:`aiotestfile_paths`).

    Raises:
        AiotestFileError: As :func:`load_aiotestfile`, or a folder with no
            ``.py`` file.
    """
    paths = aiotestfile_paths(spec)
    if not paths:
        raise AiotestFileError(f"-f {spec!r} names no .py file: give a file or a folder of them")
    return [load_aiotestfile(p) for p in paths]


def user_classes_in(module: ModuleType) -> list[type[User]]:
    """The concrete (non-abstract) user classes a module defines or imports,
    in the order they appear."""
    return [
        v
        for v in vars(module).values()
        if inspect.isclass(v) and issubclass(v, User) and not v.abstract
    ]


def shape_classes_in(module: ModuleType) -> list[type[LoadTestShape]]:
    """The concrete load shape classes (:class:`aiotest.LoadTestShape`
    subclasses) a module defines or imports."""
    return [
        v
        for v in vars(module).values()
        if inspect.isclass(v) and issubclass(v, LoadTestShape) and not v.abstract
    ]


def select_user_classes(found: list[type[User]], names: list[str], path: str) -> list[type[User]]:
    """The classes named on the command line, or all of them.

    Raises:
        AiotestFileError: No user class in the file, or an unknown name.
    """
    if not found:
        raise AiotestFileError(
            f"{path} defines no user class: subclass aiotest.AsyncHttpUser (or User) and add @task methods"
        )
    if not names:
        return found
    by_name = {c.__name__: c for c in found}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise AiotestFileError(
            f"unknown user class {', '.join(repr(n) for n in unknown)}: "
            f"{path} defines {', '.join(sorted(by_name))}"
        )
    return [by_name[n] for n in names]
