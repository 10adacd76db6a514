"""Precomputed latents: the frozen autoencoder applied once to every training episode.

With ``cache_latents=true`` the DiT stage encodes each training episode whole (its
first frame to its last, as the simulator sees a world) into
``RUN/latents/<resolution>.npy``, a float16 array ``(episodes, T', C, h, w)`` read by
memory map, with the episodes' actions and object masks (at the latent size: a latent
pixel belongs to an object if any pixel under it does) beside it. A training step then slices a
window out of it instead of decoding an episode file and running the encoder: on
CPU that is most of the DiT stage's data cost. The cache is keyed by the
autoencoder's weights and the episode list (``index.json``); a mismatch rebuilds it.

A window cut from a whole-episode encoding differs slightly, at its first frames,
from encoding the window alone (the causal encoder sees the frames before it).
That is what the simulator produces too (one continuous latent video), so it is
the better match; with a temporal factor above 1 a window would also have to start
on a latent-frame boundary, so the cache needs ``temporal_factor`` 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from worldsim.atomic import atomic_path, atomic_write_text, file_lock
from worldsim.data.dataset import object_mask, parse_item, window_start
from worldsim.data.episode import load_episode
from worldsim.frames import to_model
from worldsim.runtime import autocast

log = logging.getLogger("worldsim.data.latents")


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class LatentClips(torch.utils.data.Dataset):
    """Windows of cached latents, with the same items as :class:`ClipDataset`
    (``latents`` in place of ``frames``) and the same window for the same
    ``(i, seed, frames)``."""

    def __init__(self, episodes: list[dict[str, Any]], files: dict[tuple[int, int], tuple[Path, Path, Path]],
                 slots: list[tuple[tuple[int, int], int]], clip_frames: int):
        self.episodes, self.files, self.slots = episodes, files, slots
        self.clip_frames = clip_frames
        self._open: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own memory maps
        return {**self.__dict__, "_open": {}}

    def arrays(self, res: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if res not in self._open:
            zpath, apath, opath = self.files[res]
            self._open[res] = (np.load(zpath, mmap_mode="r"), np.load(apath), np.load(opath, mmap_mode="r"))
        return self._open[res]

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int | tuple[int, ...]) -> dict[str, Any]:
        k, seed, length = parse_item(i, len(self.episodes), self.clip_frames)
        row = self.episodes[k]
        res, slot = self.slots[k]
        zs, acts, objs = self.arrays(res)
        z = zs[slot]
        start = window_start(row["id"], z.shape[0], length, seed)  # the window ClipDataset would take
        return {
            "latents": torch.from_numpy(np.ascontiguousarray(z[start : start + length], dtype=np.float32)),
            "actions": torch.from_numpy(np.ascontiguousarray(acts[slot, start : start + length])),
            "objects": torch.from_numpy(np.ascontiguousarray(objs[slot, start : start + length]).astype(bool)),
            "caption": row["caption"],
            "caption_detailed": row["caption_detailed"],
            "episode": row["id"],
            "start": start,
        }


@torch.no_grad()
def build_latent_cache(dataset: Any, ae: Any, root: Path, *, device: torch.device, precision: str, batch: int = 8,
                       progress: bool = True) -> LatentClips:
    """Encode every episode of ``dataset`` (a ClipDataset) into ``root`` (or reuse a
    matching cache there); returns the windows over it."""
    if ae.temporal_factor != 1:
        raise ValueError(f"cache_latents needs an autoencoder of temporal factor 1 (this one merges {ae.temporal_factor} frames); "
                         "set cache_latents=false")
    root.mkdir(parents=True, exist_ok=True)
    episodes = dataset.episodes
    key = {"autoencoder": weights_digest(ae), "episodes": [f"{r['_root']}/{r['path']}" for r in episodes], "format": 2}
    key_digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    by_res: dict[tuple[int, int], list[int]] = {}
    for k, r in enumerate(episodes):
        by_res.setdefault(tuple(r["resolution"]), []).append(k)
    slots: list[tuple[tuple[int, int], int]] = [((0, 0), 0)] * len(episodes)
    files: dict[tuple[int, int], tuple[Path, Path]] = {}
    with file_lock(root / ".lock"):  # one process builds, the others (DDP ranks) wait and read
        index_path = root / "index.json"
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
        fresh = index.get("key") != key_digest
        for res, ks in by_res.items():
            lengths = {int(episodes[k]["num_frames"]) for k in ks}
            if len(lengths) > 1:
                raise ValueError(f"cache_latents needs episodes of one length per resolution; {res[0]}x{res[1]} has lengths {sorted(lengths)}")
            name = f"{res[0]}x{res[1]}"
            zpath, apath, opath = root / f"{name}.npy", root / f"{name}-actions.npy", root / f"{name}-objects.npy"
            if fresh or not (zpath.is_file() and apath.is_file() and opath.is_file()):
                T = lengths.pop()
                h, w = res[0] // ae.spatial_factor, res[1] // ae.spatial_factor
                with atomic_path(zpath, keep_suffix=True) as tmp:
                    z = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(ks), T, ae.latent_channels, h, w))
                    acts = np.zeros((len(ks), T, 2), np.float32)
                    objs = np.zeros((len(ks), T, h, w), np.uint8)
                    for s in tqdm(range(0, len(ks), batch), desc=f"encode {name}", unit="batch", disable=not progress):
                        rows = [episodes[k] for k in ks[s : s + batch]]
                        eps = [load_episode(Path(r["_root"]) / r["path"]) for r in rows]
                        video = to_model(np.stack([e["frames"] for e in eps]), device)
                        with autocast(device, precision):
                            z[s : s + len(eps)] = ae.encode(video).float().cpu().numpy().astype(np.float16)
                        acts[s : s + len(eps)] = np.stack([e["actions"] for e in eps])
                        masks = torch.from_numpy(np.stack([object_mask(e["segmentation"], int(r["num_objects"])) for e, r in zip(eps, rows)]))
                        objs[s : s + len(eps)] = F.adaptive_max_pool2d(masks.float(), (h, w)).numpy().astype(np.uint8)  # (b, T, h, w)
                    z.flush()
                    del z
                np.save(apath, acts)
                np.save(opath, objs)
            files[res] = (zpath, apath, opath)
            held = np.load(zpath, mmap_mode="r").shape[0]
            if held != len(ks):
                raise ValueError(f"the latent cache {zpath} holds {held} episodes, expected {len(ks)}; delete {root} to rebuild it")
            for slot, k in enumerate(ks):
                slots[k] = (res, slot)
        if fresh:
            atomic_write_text(index_path, json.dumps({"key": key_digest, "episodes": len(episodes)}))
    return LatentClips(episodes, files, slots, dataset.clip_frames)
