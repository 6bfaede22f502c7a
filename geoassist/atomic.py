"""Atomic folder writes: a hidden temporary sibling, one rename, and the clean-up of what a
killed run leaves behind.

A command that writes a folder (``export``, ``data build``, a checkpoint save) builds it in
``.<name>.tmp-<host>-<pid>-<random>`` beside the target and renames it into place, so a crash
never leaves half a folder under the real name. A run killed with ``kill -9`` cannot remove
its temporary folder, though, and those hold whole models (hundreds of MB). The owner's host
and process id are in the name, so the next run of the same command (:func:`make_temp_dir`,
which calls :func:`remove_stale_temp_dirs`) removes the folders whose process is gone on this
host, and never one whose process is still running or that another machine wrote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

__all__ = [
    "TEMP_KINDS",
    "make_temp_dir",
    "temp_name",
    "remove_stale_temp_dirs",
    "replace_folder",
    "replace_file",
    "process_alive",
]

logger = logging.getLogger(__name__)

TEMP_KINDS = ("tmp", "scratch", "old")
"""What a temporary sibling is for: the output being built, scratch space, the replaced output."""


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temp_name(target: Path, kind: str = "tmp", pid: int | None = None) -> str:
    """The name prefix of ``target``'s temporary sibling of ``kind`` owned by ``pid`` (default: us)."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"kind must be one of {TEMP_KINDS}, got {kind!r}")
    return f".{target.name}.{kind}-{_host_tag()}-{os.getpid() if pid is None else pid}-"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user's counts)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs(target: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` whose owning process is gone; returns them.

    Only names this module writes are considered (``.<name>.<kind>-<host>-<pid>-...``), only
    this host's, and only when that process no longer runs.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.(?:{'|'.join(TEMP_KINDS)})-(?P<host>[0-9a-f]{{6}})-(?P<pid>\d+)-"
    )
    host = _host_tag()
    removed = []
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or match["host"] != host or process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not entry.exists():
            logger.warning("removed %s, left by a run that was killed", entry)
            removed.append(entry)
    return removed


def make_temp_dir(target: str | Path, kind: str = "tmp") -> Path:
    """A new, empty temporary sibling folder of ``target``, after removing stale ones."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target)
    return Path(tempfile.mkdtemp(prefix=temp_name(target, kind), dir=target.parent))


def replace_folder(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, replacing an earlier one only now.

    The earlier folder is renamed aside first and removed last, so at every moment either the
    old or the new folder is at ``target`` (a kill in between leaves a stale ``old`` sibling,
    which the next run removes).
    """
    if not target.exists():
        os.replace(new, target)
        return
    backup = Path(tempfile.mkdtemp(prefix=temp_name(target, "old"), dir=target.parent))
    os.replace(target, backup / "previous")
    try:
        os.replace(new, target)
    except OSError:
        os.replace(backup / "previous", target)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def replace_file(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling renamed over it.

    Readers see the old file or the new one, never half of it; the file is made readable by
    everyone (``0644``), as an ordinary write would leave it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
