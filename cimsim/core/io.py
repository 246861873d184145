"""Durable files: atomic rewrites, fsynced appends, plain permissions, user-readable errors.

Every stage that writes (adapters, device-card fitting, runs) goes through these, so a reader sees
a file's old or new content, never half of it, and a results folder or cache shared with a group
stays readable (``tempfile`` and ``safetensors`` would create private 0600 files).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from cimsim.core.errors import CimsimError


def default_mode(directory: bool = False) -> int:
    """The permissions a plain ``open``/``mkdir`` would give under the current umask (tempfile
    creates private 0600/0700 files, which would surprise anyone sharing a results folder)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """``safetensors.torch.save_file`` with the permissions of a plain file (it creates 0600)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    os.chmod(path, default_mode())


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` (or bytes) so that readers see the old or the new file,
    never half."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, default_mode())
        with os.fdopen(handle, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; missing or damaged files are a user error."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CimsimError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CimsimError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CimsimError(f"{path} does not hold a JSON object")
    return data


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file the user wrote (``what`` names it in errors: "device card", ...)."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CimsimError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CimsimError(f"{what} {path} is not valid TOML: {err}") from None


def append_point(path: Path, row: dict[str, Any]) -> None:
    """Append one finished point and force it to disk before returning."""
    line = json.dumps(row, sort_keys=True) + "\n"
    with path.open("a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
