"""Where cimsim keeps files it fetches or builds once and reuses: task data, adapters."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The cache root: ``$CIMSIM_CACHE``, else ``$XDG_CACHE_HOME/cimsim``, else ``~/.cache/cimsim``.

    An empty variable counts as unset, as the XDG base-directory spec asks. The directory is not
    created here; whoever writes into it creates what it needs.
    """
    explicit = os.environ.get("CIMSIM_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "cimsim"
    return Path.home() / ".cache" / "cimsim"
