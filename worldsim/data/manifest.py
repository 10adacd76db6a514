"""``manifest.jsonl``: one JSON line per episode on disk, the index every reader uses.

A line is appended only after its episode file has been renamed into place, under
an exclusive file lock (several generation processes may share a folder), so the
manifest never names an episode that is not on disk. A line cut short by a crash is
skipped on reading and repaired by the next generation run.

Required keys of a line: ``id, path`` (relative to the manifest's folder),
``scene, engine, seed, split, num_frames, resolution`` ([H, W]), ``fps, params``
(the full scene spec), ``events, caption, caption_detailed``.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worldsim.atomic import atomic_write_text

MANIFEST = "manifest.jsonl"
REQUIRED_KEYS = (
    "id",
    "path",
    "scene",
    "engine",
    "seed",
    "split",
    "num_frames",
    "resolution",
    "fps",
    "params",
    "events",
    "caption",
    "caption_detailed",
)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says which file and line."""


def manifest_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / MANIFEST


def read_manifest(root: str | os.PathLike[str], *, strict: bool = False, malformed: list[str] | None = None) -> list[dict[str, Any]]:
    """All complete lines of ``root/manifest.jsonl`` (an empty list if there is none).

    A final line without its newline (a write cut short) is skipped with a warning;
    any other malformed line raises ManifestError, or is skipped with a warning
    unless ``strict``. ``malformed``, if given, receives the text of every line skipped.
    """
    path = manifest_path(root)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: possibly cut short
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in REQUIRED_KEYS if k not in row]
            if missing:
                raise ValueError(f"missing keys {missing}")
        except ValueError as e:
            msg = f"{path}:{i + 1}: {'incomplete last line' if last else 'malformed line'} ({e})"
            if strict and not last:
                raise ManifestError(msg) from e
            warnings.warn(msg + "; skipped", stacklevel=2)
            if malformed is not None:
                malformed.append(line)
            continue
        out.append(row)
    return out


class _Locked:
    """An exclusive lock on ``root/.manifest.lock`` for the duration of a with-block."""

    def __init__(self, root: Path):
        self.path = root / ".manifest.lock"

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def append_manifest(root: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Append lines (each a complete episode already on disk) under the lock."""
    root = Path(root)
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    if not data:
        return
    with _Locked(root):
        path = manifest_path(root)
        # Repair a line cut short by a crash: start on a fresh line.
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = "\n" + data
        with open(path, "a") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


QUARANTINE = "manifest.quarantine.jsonl"


def compact_manifest(root: str | os.PathLike[str], *, order: Any = None) -> list[dict[str, Any]]:
    """Rewrite the manifest atomically, under the lock: complete lines only, one per
    id (the last wins), only episodes whose file exists, sorted by ``order`` (a key
    function; default: by id). Returns the rows written.

    A line it cannot parse is never dropped: it is first appended to
    ``manifest.quarantine.jsonl`` beside the manifest (with a warning naming it), to
    be mended there and appended back."""
    root = Path(root)
    with _Locked(root):
        bad: list[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = read_manifest(root, malformed=bad)
        if bad:
            quarantine = root / QUARANTINE
            kept = quarantine.read_text() if quarantine.exists() else ""
            atomic_write_text(quarantine, kept + "".join(line + "\n" for line in bad))
            warnings.warn(f"{manifest_path(root)}: {len(bad)} malformed line(s) moved to {quarantine}; mend them there and "
                          "append them back to keep those episodes listed", stacklevel=2)
        by_id = {r["id"]: r for r in rows if (root / r["path"]).is_file()}
        out = sorted(by_id.values(), key=order or (lambda r: r["id"]))
        atomic_write_text(manifest_path(root), "".join(json.dumps(r, sort_keys=True) + "\n" for r in out))
    return out
