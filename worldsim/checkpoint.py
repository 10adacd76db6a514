"""Checkpoints: what a training run saves, and how anything loads it back safely.

A checkpoint is one file, ``RUN/checkpoints/step_NNNNNNN.pt``, written atomically,
holding ``{"kind", "step", "config", "model", "ema", "optimizer"}``: plain tensors,
numbers, strings and dicts, so it loads with ``torch.load(weights_only=True)`` (no
pickled code runs). ``config`` is the resolved run config as a dict; loading code
compares the parts that shape the weights against what it expects and refuses a
mismatch, naming the keys that differ.

Everywhere a checkpoint is asked for, a run directory (its latest checkpoint) or a
checkpoint file is accepted. An exported model (:func:`export_safetensors`, e.g. the
bundled reference model) is a ``.safetensors`` file: the weights to use (EMA where
the run kept them), half precision, and as JSON in its metadata ``kind``, ``step``,
``config`` (what loading builds, with any default changed since, such as
``flow.sampler_steps``), ``source``, ``train`` and ``compute`` (the run's resolved
training config, FLOPs and wall time) and ``revised`` (the defaults changed after
training, ``key: [trained, now]``); it loads the same way, with no optimizer state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from worldsim.assets import reference_checkpoint
from worldsim.atomic import atomic_path

_STEP = re.compile(r"step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or made for something else."""


class CheckpointKindError(CheckpointError):
    """An intact checkpoint of another kind (an autoencoder's where a DiT's is needed, say)."""


NO_CHECKPOINT = (
    "no trained model to load: pass checkpoint=PATH (a DiT run directory, a .pt checkpoint or an exported .safetensors file; "
    "python -m worldsim.train stage=dit ... makes one), or reinstall worldsim (pip install .) for its bundled reference model"
)


def world_checkpoint(path: str | os.PathLike[str] | None) -> str:
    """The checkpoint to use: ``path``, or the bundled reference model when it is
    None. CheckpointError when there is neither (or ``path`` is empty)."""
    if path is None:
        bundled = reference_checkpoint()
        if bundled is None:
            raise CheckpointError(NO_CHECKPOINT)
        return bundled
    if not str(path).strip():
        raise CheckpointError("checkpoint is empty: pass checkpoint=PATH, or leave checkpoint out (null) for the bundled reference model")
    return str(path)


def checkpoint_path(run: str | os.PathLike[str], step: int) -> Path:
    return Path(run) / "checkpoints" / f"step_{step:07d}.pt"


def step_checkpoints(run: str | os.PathLike[str]) -> list[Path]:
    """A run directory's checkpoints, oldest first."""
    folder = Path(run) / "checkpoints"
    steps = []
    for p in folder.glob("step_*.pt"):
        m = _STEP.search(p.name)
        if m:
            steps.append((int(m.group(1)), p))
    return [p for _, p in sorted(steps)]


def latest_checkpoint(run: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint of a run directory, or None if it has none."""
    found = step_checkpoints(run)
    return found[-1] if found else None


def resolve(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file from a file or a run directory; CheckpointError if none."""
    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise CheckpointError(f"{p} is a directory with no checkpoints/step_*.pt; train there first, or pass a checkpoint file")
        return found
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: pass a run directory, a .pt checkpoint or an exported .safetensors file")
    return p


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (see the module docstring for the keys)."""
    missing = [k for k in ("kind", "step", "config", "model") if k not in payload]
    if missing:
        raise ValueError(f"a checkpoint needs {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], *, kind: str | None = None, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint (a file or a run directory's latest) without unpickling code.

    Raises CheckpointError when it is missing, truncated or corrupt, and
    CheckpointKindError (a CheckpointError) when it is of another ``kind``
    ("autoencoder", "dit").
    """
    p = resolve(path)
    if p.suffix == ".safetensors":
        ckpt = _load_safetensors(p, map_location)
        if kind is not None and ckpt.get("kind") != kind:
            raise CheckpointKindError(f"{p} is a {ckpt.get('kind')!r} checkpoint; a {kind!r} checkpoint is needed here")
        ckpt["path"] = str(p)
        return ckpt
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable checkpoint ({load_failure(e)}); it may be truncated or from another program") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{p}: not a worldsim checkpoint (keys: {list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__})")
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointKindError(f"{p} is a {ckpt.get('kind')!r} checkpoint; a {kind!r} checkpoint is needed here")
    ckpt["path"] = str(p)
    ckpt.setdefault("revised", {})  # a run's own checkpoint: nothing changed after training
    return ckpt


def load_failure(e: Exception) -> str:
    """Why a file did not load, in one line. PyTorch's advice to load with
    ``weights_only=False`` is never passed on: that would run code from the file."""
    first = (str(e).strip().splitlines() or [""])[0]
    if "weights_only" in str(e) or "Unpickler" in str(e):
        return "it holds objects other than tensors and plain data, which worldsim never unpickles"
    return f"{type(e).__name__}: {first[:300]}"


def _load_safetensors(p: Path, map_location: str) -> dict[str, Any]:
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device=map_location) as f:
            meta = json.loads((f.metadata() or {}).get("worldsim", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable safetensors file ({load_failure(e)}); it may be truncated") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"{p}: a safetensors file without worldsim metadata; export one with python -m worldsim.export")
    ckpt: dict[str, Any] = {
        "kind": meta.get("kind"), "step": meta.get("step", 0), "config": meta["config"], "ema": {},
        "train": meta.get("train"), "compute": meta.get("compute"), "source": meta.get("source"),
        "revised": meta.get("revised") or {},
    }
    for part in ("model", "autoencoder"):
        prefix = part + "."
        ckpt[part] = {k[len(prefix) :]: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
    return ckpt


def export_safetensors(
    run: str | os.PathLike[str], out: str | os.PathLike[str], *, dtype: torch.dtype = torch.float16, sampler_steps: int | None = None,
) -> Path:
    """Write a DiT run's weights for use (EMA if kept; ``dtype``; no optimizer) as one
    ``.safetensors`` file that every ``checkpoint=`` accepts.

    ``sampler_steps`` changes the denoising steps the file's users get by default
    (``flow.sampler_steps``), a choice made after training (it does not change the
    weights); the file records it under ``revised`` as ``[trained, now]`` beside the
    untouched training config. An exported file can be exported again this way.
    """
    import copy
    import json
    import numbers

    from safetensors.torch import save_file

    if sampler_steps is not None:
        if isinstance(sampler_steps, bool) or not isinstance(sampler_steps, numbers.Integral) or sampler_steps < 1:
            raise ValueError(f"sampler_steps must be a whole number >= 1, got {sampler_steps!r}")
        sampler_steps = int(sampler_steps)  # numpy integers too, as JSON holds them
    ckpt = load_checkpoint(run, kind="dit")
    weights = ckpt["ema"] if ckpt.get("ema") else ckpt["model"]
    tensors = {}
    for part, sd in (("model", weights), ("autoencoder", ckpt["autoencoder"])):
        for k, v in sd.items():
            v = v.detach().cpu()
            if v.is_floating_point():
                if dtype == torch.float16 and v.abs().max() > 6e4:
                    raise ValueError(f"{part}.{k} holds values beyond float16's range; export with dtype=bfloat16 or float32")
                v = v.to(dtype)
            tensors[f"{part}.{k}"] = v.contiguous()
    config, revised = copy.deepcopy(ckpt["config"]), dict(ckpt["revised"])
    if sampler_steps is not None:
        flow = config.setdefault("flow", {})
        trained = revised.pop("flow.sampler_steps", [flow.get("sampler_steps", 4)])[0]  # 4: FlowConfig's, for files older than the key
        flow["sampler_steps"] = sampler_steps
        if sampler_steps != trained:
            revised["flow.sampler_steps"] = [trained, sampler_steps]
    meta = {"worldsim": json.dumps({
        "kind": "dit", "step": int(ckpt["step"]), "config": config, "source": str(ckpt.get("source") or ckpt["path"]),
        "train": ckpt.get("train"), "compute": ckpt.get("compute"),  # provenance: the resolved training config, FLOPs and wall time
        **({"revised": revised} if revised else {}),  # defaults changed after training: key -> [trained, now]
    })}
    out = Path(out)
    with atomic_path(out, keep_suffix=True) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return out


def config_differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: saved -> wanted`` for every key whose value differs (recursively)."""
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} in the checkpoint, {b!r} here")
    return out


def require_same(saved: dict[str, Any], wanted: dict[str, Any], *, what: str, source: str) -> None:
    """Raise CheckpointError listing the differences if the two configs differ."""
    diff = config_differences(saved, wanted)
    if diff:
        raise CheckpointError(
            f"{source} was trained with another {what} config: " + "; ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
            + f". Use the {what} settings it was trained with, or another checkpoint"
        )
