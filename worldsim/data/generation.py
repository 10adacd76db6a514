"""Making episodes: streams of simulated episodes written into a data folder
(what ``python -m worldsim.generate`` runs).

Each (scene, engine, split) in a folder is a *stream* of episodes numbered 0, 1, ...;
episode i's spec comes from ``episode_seed(seed, scene, split, i)``, so the output
is byte-identical whatever ``workers`` is, and the two engines simulate the same
specs. Episodes are written atomically and the manifest only ever names finished
files, so a killed run leaves no half files and a rerun on the same folder completes
it without redoing anything. A folder whose stream was made with another config is
refused, never mixed.

Layout::

    DIR/manifest.jsonl                      one line per episode (worldsim.data.manifest)
    DIR/episodes/SCENE/ENGINE/SPLIT/000000.npz
    DIR/.worldsim/SCENE-ENGINE-SPLIT.json   the config each stream was made with
    DIR/preview.mp4                         a grid of episodes, for people
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldsim.atomic import atomic_write_text
from worldsim.data.episode import ARRAY_KEYS, load_episode, save_episode
from worldsim.data.manifest import append_manifest, compact_manifest, read_manifest
from worldsim.sim.captions import caption, caption_detailed
from worldsim.sim.engine import Engine
from worldsim.sim.engines import EngineConfig
from worldsim.sim.scenes import SPLITS, ConfigError, SceneConfig, episode_seed, parse_resolution
from worldsim.sim.simulate import simulate
from worldsim.sim.spec import SceneSpec
from worldsim.video import write_labelled

log = logging.getLogger("worldsim.data.generation")

FORMAT_VERSION = 1


@dataclass
class StreamConfig:
    """One stream of episodes: a scene in an engine, for a split."""

    scene: SceneConfig
    engine: EngineConfig
    episodes: int = 64
    frames: int = 32
    resolution: tuple[int, int] = (64, 64)
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ConfigError(f"episodes must be >= 0, got {self.episodes}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        self.resolution = parse_resolution(self.resolution)
        self.scene.validate(resolution=self.resolution, num_frames=self.frames)

    @property
    def name(self) -> str:
        return f"{self.scene.name}-{self.engine.name}-{self.split}"

    def identity(self) -> dict[str, Any]:
        """What must match for episodes to belong to the same stream (not the count)."""
        return {
            "format": FORMAT_VERSION,
            "scene": self.scene.to_dict(),
            "engine": dataclasses.asdict(self.engine),
            "frames": self.frames,
            "resolution": list(self.resolution),
            "seed": self.seed,
            "split": self.split,
        }

    def episode_path(self, index: int) -> str:
        return f"episodes/{self.scene.name}/{self.engine.name}/{self.split}/{index:06d}.npz"

    def episode_id(self, index: int) -> str:
        return f"{self.name}-{index:06d}"


# -- one episode ------------------------------------------------------------------------
_ENGINE: Engine | None = None
_ENGINE_KEY: Any = None


def process_engine(cfg: EngineConfig) -> Engine:
    """This process's engine (one per worker, reused across episodes)."""
    global _ENGINE, _ENGINE_KEY
    key = (cfg.name, json.dumps(cfg.options or {}, sort_keys=True))
    if _ENGINE is None or _ENGINE_KEY != key:
        if _ENGINE is not None:
            _ENGINE.close()
        _ENGINE, _ENGINE_KEY = cfg.make(), key
    return _ENGINE


def world_spec(scene: SceneConfig, seed: int, *, frames: int, resolution: tuple[int, int], split: str) -> tuple[SceneSpec, np.random.Generator]:
    """The world an episode seed names: its spec, and the generator the episode's
    actions are then drawn from. ``PhysicsWorld-v0``'s ``reset(seed=...)`` starts from
    the same spec, so a stored episode and the environment reset with the episode's
    ``seed`` (manifest) are the same world."""
    rng = np.random.default_rng(seed)
    return scene.sample(rng, num_frames=frames, resolution=resolution, split=split), rng


def simulate_seed(
    scene: SceneConfig, engine: Engine, seed: int, *, frames: int, resolution: tuple[int, int], split: str
) -> tuple[SceneSpec, dict[str, np.ndarray], list[dict[str, Any]]]:
    """Simulate the episode of an episode seed: its spec (with the agent's policy in its
    labels), arrays and events; what :func:`make_episode` stores."""
    spec, rng = world_spec(scene, seed, frames=frames, resolution=resolution, split=split)
    actions = scene.action_source(spec, rng)
    arrays, events = simulate(spec, engine, actions)
    return spec, arrays, events


def make_episode(stream: StreamConfig, index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Simulate episode ``index`` of a stream: its arrays and its manifest line."""
    seed = episode_seed(stream.seed, stream.scene.name, stream.split, index)
    spec, arrays, events = simulate_seed(stream.scene, process_engine(stream.engine), seed, frames=stream.frames,
                                         resolution=stream.resolution, split=stream.split)
    meta = {
        "id": stream.episode_id(index),
        "index": index,
        "path": stream.episode_path(index),
        "scene": stream.scene.name,
        "engine": stream.engine.name,
        "seed": seed,
        "split": stream.split,
        "num_frames": stream.frames,
        "num_objects": len(spec.objects),
        "resolution": list(stream.resolution),
        "fps": spec.physics.fps,
        "params": spec.to_dict(),
        "events": events,
        "caption": caption(spec, events),
        "caption_detailed": caption_detailed(spec, events),
    }
    return arrays, meta


def _write_episode(job: tuple[StreamConfig, int, str]) -> dict[str, Any]:
    stream, index, root = job
    arrays, meta = make_episode(stream, index)
    save_episode(Path(root) / meta["path"], arrays, meta)
    return meta


# -- a stream -------------------------------------------------------------------------------
def _identity_path(root: Path, stream: StreamConfig) -> Path:
    return root / ".worldsim" / f"{stream.name}.json"


def _check_identity(root: Path, stream: StreamConfig) -> None:
    """Refuse a folder whose stream was made with another config. The config is
    recorded with the stream's first episode (:func:`_record_identity`), so a run that
    failed before writing any episode leaves nothing that refuses the next one."""
    path = _identity_path(root, stream)
    if path.exists():
        old = json.loads(path.read_text())
        if old != stream.identity():
            diffs = _diff(old, stream.identity())
            raise ConfigError(
                f"{root} already holds {stream.name} episodes made with another config "
                f"({'; '.join(diffs[:6])}). Use a new out directory, or rerun with the original settings "
                "to complete it."
            )


def _record_identity(root: Path, stream: StreamConfig) -> None:
    path = _identity_path(root, stream)
    if not path.exists():
        atomic_write_text(path, json.dumps(stream.identity(), indent=1, sort_keys=True))


def episode_intact(path: Path) -> bool:
    """Whether an episode file is whole, cheaply: a readable zip directory that lists
    every array, members that fit in the file. (A file cut short by a crash or a full
    disk loses its directory, which sits at the end.)"""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    names = {i.filename.removesuffix(".npy") for i in infos}
    return set(ARRAY_KEYS) | {"meta"} <= names and sum(i.compress_size for i in infos) <= path.stat().st_size


def check_memory(stream: StreamConfig, workers: int) -> None:
    """Refuse, before any work, a stream whose episodes cannot fit in this machine's
    memory (each worker holds one episode's frames and masks, and the writer a copy)."""
    h, w = stream.resolution
    need = 2 * workers * stream.frames * h * w * 4  # RGB + segmentation bytes, twice over
    available = memory_available()
    if available is not None and need > available:
        raise ConfigError(
            f"{stream.name}: {stream.frames} frames of {h}x{w} need about {need / 2**30:.1f} GiB with workers={workers}, "
            f"and this machine has {available / 2**30:.1f} GiB available; lower resolution, frames or workers"
        )


def memory_available() -> int | None:
    """Bytes of memory available (Linux's MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')} was {a!r}, now {b!r}"]


def _recover(root: Path, stream: StreamConfig, indices: list[int]) -> None:
    """Bring the manifest in line with the files of ``indices`` after a crash:
    drop temporary files, and list finished files the manifest is missing."""
    listed = {r["id"] for r in read_manifest(root)}
    missing = []
    for i in indices:
        p = root / stream.episode_path(i)
        for tmp in p.parent.glob(f".{p.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if p.exists() and stream.episode_id(i) not in listed:
            try:
                missing.append(load_episode(p, frames=False)["meta"])
            except ValueError as e:
                log.warning("removing unreadable %s: %s", p, e)
                p.unlink()
    if missing:
        append_manifest(root, missing)


def _pool_context() -> mp.context.BaseContext:
    # Not fork: a parent that has rendered holds an OpenGL context that a forked
    # child cannot use. forkserver starts workers from a clean server process.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["worldsim.sim.pybullet", "worldsim.sim.mujoco"])
        return ctx
    return mp.get_context("spawn")


def generate_stream(
    stream: StreamConfig, out: str | os.PathLike[str], *, workers: int = 1, shard: int = 0, shards: int = 1, progress: bool = True
) -> list[dict[str, Any]]:
    """Make (or complete) a stream in ``out``; return its manifest lines, by index."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if not 0 <= shard < shards:
        raise ConfigError(f"shard must be in [0, shards), got shard={shard} shards={shards}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out={root} is a file, not a folder; pass a folder for the episodes (it is made if missing)")
    check_memory(stream, workers)
    root.mkdir(parents=True, exist_ok=True)
    _check_identity(root, stream)
    mine = [i for i in range(stream.episodes) if i % shards == shard]
    _recover(root, stream, mine)
    broken = [i for i in mine if (root / stream.episode_path(i)).exists() and not episode_intact(root / stream.episode_path(i))]
    if broken:
        log.warning("%s: %d episode file(s) on disk are not whole (e.g. %s); regenerating them", stream.name, len(broken),
                    stream.episode_path(broken[0]))
        for i in broken:
            (root / stream.episode_path(i)).unlink()
    todo = [i for i in mine if not (root / stream.episode_path(i)).exists()]
    if len(todo) < len(mine):
        log.info("%s: %d of %d episodes already on disk", stream.name, len(mine) - len(todo), len(mine))
        _record_identity(root, stream)
    jobs = [(stream, i, str(root)) for i in todo]
    bar = tqdm(total=len(jobs), desc=stream.name, unit="ep", disable=True if not progress or not jobs else None, file=sys.stderr)  # None: off without a terminal
    try:
        for meta in _run(jobs, workers):
            append_manifest(root, [meta])
            _record_identity(root, stream)
            bar.update()
    finally:
        bar.close()
    rows = compact_manifest(root, order=lambda r: (r["scene"], r["engine"], r["split"], r.get("index", 0)))
    prefix = f"{stream.name}-"
    return [r for r in rows if r["id"].startswith(prefix)]


def _run(jobs: list[tuple[StreamConfig, int, str]], workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _write_episode(job)
        return
    with _pool_context().Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
        yield from pool.imap(_write_episode, jobs, chunksize=1)


def _worker_init() -> None:
    global _ENGINE
    _ENGINE = None


def write_preview(out: str | os.PathLike[str], rows: list[dict[str, Any]], *, max_episodes: int = 16, name: str = "preview.mp4") -> Path | None:
    """The first episodes of ``rows`` for people to look at: four to a row, each named,
    enlarged to 128 px, the frame number on every frame (``preview.mp4``, ``.gif`` and a
    contact sheet ``.png``)."""
    rows = rows[:max_episodes]
    if not rows:
        return None
    episodes = [(r, load_episode(Path(out) / r["path"])["frames"]) for r in rows]
    episodes = [(r, c) for r, c in episodes if c.shape[1:] == episodes[0][1].shape[1:]]  # one size per video
    per_row = min(4, len(episodes))
    grid = []
    for k in range(0, len(episodes), per_row):
        chunk = episodes[k : k + per_row]
        clips = [c for _, c in chunk] + [np.zeros_like(chunk[0][1][:1])] * (per_row - len(chunk))
        grid.append((f"{chunk[0][0]['scene']} {chunk[0][0]['engine']} {chunk[0][0]['split']} #{chunk[0][0]['index']}+", clips))
    paths = write_labelled(Path(out) / Path(name).stem, grid, [f"+{j}" for j in range(per_row)], fps=rows[0]["fps"], tile=128,
                           first_step=0, sheet_columns=[0])
    return paths["mp4"]
