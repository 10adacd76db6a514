"""Clips for training: windows of ``clip_frames`` consecutive frames from episodes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from worldsim.data.episode import load_episode
from worldsim.data.manifest import read_manifest
from worldsim.frames import to_model


class DataError(ValueError):
    """A data folder or selection that holds nothing usable; the message says why."""


def select_episodes(
    root: str | os.PathLike[str],
    *,
    split: str | list[str] | None = None,
    scenes: list[str] | None = None,
    engines: list[str] | None = None,
    resolution: tuple[int, int] | None = None,
    min_frames: int = 1,
) -> list[dict[str, Any]]:
    """Manifest lines of ``root`` matching the filters (None: any)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; make one with python -m worldsim.generate out={root}")
    rows = read_manifest(root)
    if not rows:
        raise DataError(f"{root} holds no episodes (no manifest.jsonl lines); make some with python -m worldsim.generate out={root}")
    splits = [split] if isinstance(split, str) else split
    keep = [
        r
        for r in rows
        if (splits is None or r["split"] in splits)
        and (scenes is None or r["scene"] in scenes)
        and (engines is None or r["engine"] in engines)
        and (resolution is None or tuple(r["resolution"]) == tuple(resolution))
        and r["num_frames"] >= min_frames
    ]
    if not keep:
        have = sorted({(r["scene"], r["engine"], r["split"], tuple(r["resolution"]), r["num_frames"]) for r in rows})
        raise DataError(
            f"no episode in {root} matches split={split} scenes={scenes} engines={engines} resolution={resolution} "
            f"with at least {min_frames} frames; it has (scene, engine, split, resolution, frames): {have[:10]}"
        )
    return keep


def object_mask(segmentation: np.ndarray, num_objects: int) -> np.ndarray:
    """Pixels of objects (ids 1 .. num_objects), not of the background or fixtures."""
    return (segmentation >= 1) & (segmentation <= num_objects)


def parse_item(i: int | tuple[int, ...], n: int, clip_frames: int) -> tuple[int, int | None, int]:
    """``i`` or ``(i, seed[, frames])`` -> (episode index, window seed or None, frames)."""
    seed, length = None, clip_frames
    if isinstance(i, tuple):
        i, seed, *rest = i
        length = rest[0] if rest else length
    return i % n, seed, length


def window_start(episode: str, frames: int, length: int, seed: int | None, *, first: bool = False) -> int:
    """The first frame of a ``length``-frame window of an episode of ``frames`` frames:
    0 with ``first``, drawn from ``seed`` if given (exact resumes), else from torch's RNG."""
    if frames < length:
        raise DataError(f"episode {episode} has {frames} frames, fewer than the {length} asked for")
    span = frames - length
    if first or span <= 0:
        return 0
    if seed is not None:
        return int(np.random.default_rng(seed).integers(span + 1))
    return int(torch.randint(span + 1, ()).item())


class ClipDataset(Dataset):
    """Windows of ``clip_frames`` frames from the episodes in generated folders.

    Item ``i`` is a window of episode ``i % len(episodes)``; ``windows_per_episode``
    repeats each episode that many times per epoch. With ``window="random"`` the
    start frame is drawn from torch's RNG (seeded per DataLoader worker, so a seeded
    DataLoader gives the same clips); ``"first"`` always starts at frame 0.

    Each item is a dict:
      ``frames``       (T, 3, H, W) float32 in [-1, 1]
      ``segmentation`` (T, H, W) int64 instance ids
      ``objects``      (T, H, W) bool, the pixels of objects (not of fixtures such as screens)
      ``actions``      (T, A) float32
      ``caption``, ``caption_detailed``, ``episode`` (id) strings; ``start`` int.

    ``root`` may be several folders. With ``mixed=True`` episodes of different
    resolutions are allowed (a bucketed batch sampler keeps each batch to one), and
    an item ``(i, seed, frames)`` asks for a window of ``frames`` frames.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | list[str],
        *,
        clip_frames: int,
        split: str | list[str] | None = "train",
        scenes: list[str] | None = None,
        engines: list[str] | None = None,
        resolution: tuple[int, int] | None = None,
        window: str = "random",
        windows_per_episode: int = 1,
        cache: bool = False,
        mixed: bool = False,
    ):
        if clip_frames < 1:
            raise DataError(f"clip_frames must be >= 1, got {clip_frames}")
        if window not in ("random", "first"):
            raise DataError(f"window must be 'random' or 'first', got {window!r}")
        roots = [Path(r) for r in (root if isinstance(root, (list, tuple)) else [root])]
        self.root = roots[0]
        self.clip_frames = clip_frames
        self.window = window
        self.windows_per_episode = windows_per_episode
        self.episodes = []
        for r in roots:
            for row in select_episodes(r, split=split, scenes=scenes, engines=engines, resolution=resolution, min_frames=1 if mixed else clip_frames):
                self.episodes.append({**row, "_root": str(r)})
        if not mixed and not self.episodes:
            raise DataError(f"no episode of at least {clip_frames} frames in {roots}")
        resolutions = sorted({tuple(r["resolution"]) for r in self.episodes})
        self.resolutions = resolutions
        if len(resolutions) > 1 and not mixed:
            raise DataError(
                f"the selected episodes have several resolutions {resolutions}; pass resolution=(H, W) "
                "to pick one (a batch needs one size)"
            )
        self.resolution: tuple[int, int] = resolutions[0]  # type: ignore[assignment]
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.episodes) * self.windows_per_episode

    def _load(self, k: int) -> dict[str, Any]:
        if self._cache is not None and k in self._cache:
            return self._cache[k]
        ep = load_episode(Path(self.episodes[k]["_root"]) / self.episodes[k]["path"])
        if self._cache is not None:
            self._cache[k] = ep
        return ep

    def __getitem__(self, i: int | tuple[int, ...]) -> dict[str, Any]:
        """Item ``i``, or ``(i, seed[, frames])``: the window start then comes from
        ``seed`` (what :class:`worldsim.training.loop.StepBatches` passes, for exact resumes)."""
        k, seed, length = parse_item(i, len(self.episodes), self.clip_frames)
        row = self.episodes[k]
        ep = self._load(k)
        start = window_start(row["id"], ep["frames"].shape[0], length, seed, first=self.window == "first")
        sl = slice(start, start + length)
        frames = torch.from_numpy(np.ascontiguousarray(ep["frames"][sl]))  # (T, H, W, 3) uint8
        frames = to_model(frames)  # (T, 3, H, W) in [-1, 1]
        seg = ep["segmentation"][sl]
        return {
            "frames": frames,
            "segmentation": torch.from_numpy(seg.astype(np.int64)),
            "objects": torch.from_numpy(object_mask(seg, int(row["num_objects"]))),
            "actions": torch.from_numpy(ep["actions"][sl].copy()),
            "caption": row["caption"],
            "caption_detailed": row["caption_detailed"],
            "episode": row["id"],
            "start": start,
        }
