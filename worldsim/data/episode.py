"""The episode file: one ``.npz`` per episode, lossless, readable by plain numpy.

Arrays (T frames, N objects, H x W pixels):

==================  ==================  =================================================
key                 shape, dtype        meaning
==================  ==================  =================================================
``frames``          (T, H, W, 3) uint8  RGB
``segmentation``    (T, H, W) uint8     instance ids: 0 background, object i is i + 1,
                                        fixture j (occluder) is N + 1 + j
``actions``         (T, A) float32      ``actions[t]`` drove the step into frame t
                                        (``actions[0]`` is zero); zeros without an agent
``positions``       (T, N, 2) float32   object centres in pixels (x right, y down)
``velocities``      (T, N, 2) float32   pixels per second
``angles``          (T, N) float32      radians, counter-clockwise
``visible_pixels``  (T, N) int32        pixels of each object in ``segmentation``
``meta``            (K,) uint8          UTF-8 JSON: the episode's manifest line
==================  ==================  =================================================

Files are written atomically (a temporary file in the same folder, then a rename),
and as a zip with fixed timestamps, so the same episode is the same bytes whoever
writes it. ``load_episode`` validates every array and raises :class:`EpisodeError`,
naming the file and the problem, on anything corrupt, truncated or inconsistent.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.atomic import atomic_path

ARRAY_KEYS = ("frames", "segmentation", "actions", "positions", "velocities", "angles", "visible_pixels")
DTYPES = {
    "frames": np.uint8,
    "segmentation": np.uint8,
    "actions": np.float32,
    "positions": np.float32,
    "velocities": np.float32,
    "angles": np.float32,
    "visible_pixels": np.int32,
}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class EpisodeError(ValueError):
    """An episode file that cannot be used; the message names the file and why."""


def save_episode(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict[str, Any], *, compresslevel: int = 1) -> None:
    """Validate and write one episode atomically (see the module docstring)."""
    path = Path(path)
    validate_arrays(arrays, source=str(path))
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for key in ARRAY_KEYS:
                _write_array(zf, key, np.ascontiguousarray(arrays[key], dtype=DTYPES[key]))
            blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
            _write_array(zf, "meta", blob)


def _write_array(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    zf.writestr(info, buf.getvalue(), compress_type=zf.compression, compresslevel=zf.compresslevel)


def load_episode(path: str | os.PathLike[str], *, frames: bool = True) -> dict[str, Any]:
    """Read and validate one episode.

    Returns a dict of the arrays in the module docstring plus ``meta`` (a dict).
    With ``frames=False`` the image arrays (``frames``, ``segmentation``) are not
    read, which is much faster for state-only work.

    Raises:
      EpisodeError: the file is missing, not a complete npz, lacks an array, or
        holds arrays of the wrong dtype or inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"{path}: no such episode file")
    wanted = [k for k in ARRAY_KEYS if frames or k not in ("frames", "segmentation")]
    out: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*wanted, "meta") if k not in z.files]
            if missing:
                raise EpisodeError(f"{path}: not an episode file, missing arrays {missing} (has {z.files})")
            for k in wanted:
                out[k] = z[k]
            meta_bytes = z["meta"]
    except EpisodeError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError from a truncated member, ...
        raise EpisodeError(
            f"{path}: corrupt or truncated episode file ({type(e).__name__}: {e}); delete it and rerun "
            "generation on the same folder to remake it"
        ) from e
    try:
        out["meta"] = json.loads(meta_bytes.tobytes().decode())
    except Exception as e:
        raise EpisodeError(f"{path}: the meta record is not valid JSON ({e})") from e
    if not isinstance(out["meta"], dict):
        raise EpisodeError(f"{path}: the meta record must be a JSON object (the episode's manifest line), got {type(out['meta']).__name__}")
    validate_arrays(out, source=str(path), partial=not frames)
    return out


def validate_arrays(arrays: dict[str, Any], *, source: str = "episode", partial: bool = False) -> None:
    """Check the dtypes and the consistency of shapes; raise EpisodeError if wrong."""
    keys = [k for k in ARRAY_KEYS if not (partial and k in ("frames", "segmentation"))]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise EpisodeError(f"{source}: missing arrays {missing}")
    for k in keys:
        a = arrays[k]
        if not isinstance(a, np.ndarray):
            raise EpisodeError(f"{source}: {k} must be a numpy array, got {type(a).__name__}")
        if a.dtype != DTYPES[k]:
            raise EpisodeError(f"{source}: {k} must be {np.dtype(DTYPES[k]).name}, got {a.dtype}")
    T, N = arrays["positions"].shape[:2] if arrays["positions"].ndim == 3 else (-1, -1)
    expect = {
        "actions": ("T", "A"),
        "positions": ("T", "N", 2),
        "velocities": ("T", "N", 2),
        "angles": ("T", "N"),
        "visible_pixels": ("T", "N"),
    }
    if not partial:
        H, W = arrays["frames"].shape[1:3] if arrays["frames"].ndim == 4 else (-1, -1)
        expect["frames"] = ("T", "H", "W", 3)
        expect["segmentation"] = ("T", "H", "W")
    else:
        H = W = -1
    dims = {"T": T, "N": N, "H": H, "W": W, "A": arrays["actions"].shape[-1] if arrays["actions"].ndim == 2 else -1}
    for k, pattern in expect.items():
        want = tuple(dims[p] if isinstance(p, str) else p for p in pattern)
        if arrays[k].shape != want or -1 in want:
            shape_text = "(" + ", ".join(str(p) for p in pattern) + ")"
            raise EpisodeError(f"{source}: {k} has shape {arrays[k].shape}, expected {shape_text} = {want}")
    if T < 1:
        raise EpisodeError(f"{source}: an episode needs at least one frame")
    for k in ("actions", "positions", "velocities", "angles"):
        if not np.isfinite(arrays[k]).all():
            bad = int((~np.isfinite(arrays[k])).sum())
            raise EpisodeError(f"{source}: {k} holds {bad} NaN or infinite values; every recorded state is finite "
                               "(hidden objects keep their true positions)")
