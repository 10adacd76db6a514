"""Training: ``python -m worldsim.train stage=autoencoder|dit data=DIR out=RUN max_steps=N``.

One plain PyTorch loop serves every stage (:mod:`worldsim.stages` says what a stage
trains and how it is scored), in the style of DiT's and nanoGPT's ``train.py``:
AdamW with linear warm-up, optional EMA weights, gradient clipping, mixed precision
(``precision=auto`` picks bf16 on GPUs and CPUs with native bf16, else fp32),
atomic checkpoints with resume from the latest, TensorBoard scalars and samples,
a tqdm bar.

Determinism. Batch ``s`` (which clips, which windows) and every random draw of the
loss at step ``s`` come from generators seeded by ``(seed, s, rank)``, so a run that
is stopped and resumed takes exactly the steps an uninterrupted one would.

Distributed. ``torchrun --nproc_per_node=N -m worldsim.train ...`` runs DDP (gloo on
CPU, NCCL on GPU): each rank takes its share of every batch, gradients are averaged,
only rank 0 writes, all ranks share the run directory ``out``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from worldsim.atomic import atomic_write_text
from worldsim.checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from worldsim.config import config_dir

log = logging.getLogger("worldsim.train")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a bad resume); the message says why."""


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up from 0
    decay: str = "none"  # after warm-up: none (constant) | cosine (down to min_lr_ratio at max_steps)
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    ema: float = 0.0  # EMA decay of the weights (0: no EMA; DiT uses 0.999)


@dataclass
class TrainConfig:
    """Settings of a run (conf/train.yaml documents each)."""

    stage: str
    data: str | list[str]  # one generated folder, or several
    out: str
    max_steps: int = 1000
    # A compute budget: the run ends when its counted training FLOPs reach this, and
    # the cosine decay runs over FLOPs instead of steps (None: max_steps alone).
    max_flops: float | None = None
    batch_size: int = 8  # clips per step, across all ranks
    clip_frames: int = 8
    resolution: list[int] | None = None  # [H, W] of the episodes to train on (None: the data's only one)
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 1
    log_every: int = 10
    sample_every: int = 500  # TensorBoard samples
    checkpoint_every: int = 500
    checkpoint_every_flops: float | None = None  # also a checkpoint each time the FLOPs pass a multiple of this
    keep_checkpoints: int = 3
    eval_only: bool = False
    eval_episodes: int = 32
    compile: bool = False  # torch.compile the training module
    cache_data: bool = False  # keep decoded episodes in memory (per DataLoader worker)
    cache_latents: bool = False  # stage=dit: encode the training episodes once into out/latents (worldsim.data.latents)
    # Buckets of size and length: each step draws one ({"resolution": [H, W], "frames": T,
    # "weight": w}) and a batch of that size; None: one bucket (resolution, clip_frames).
    buckets: list[dict[str, Any]] | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage_options: dict[str, Any] = field(default_factory=dict)  # what the stage itself reads

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.batch_size < 1 or self.clip_frames < 1:
            raise ValueError("max_steps must be >= 0, batch_size and clip_frames >= 1")
        if self.max_flops is not None and not (math.isfinite(float(self.max_flops)) and float(self.max_flops) > 0):
            raise ValueError(f"max_flops must be a positive number of FLOPs (e.g. 6e13) or null, got {self.max_flops}")
        if self.optim.decay not in ("none", "cosine"):
            raise ValueError(f"optim.decay must be none or cosine, got {self.optim.decay!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")


# -- environment -----------------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it
    PyTorch emulates bf16 matrix products at a quarter of the fp32 speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (RANK in the environment)."""
    if "RANK" not in os.environ:
        return Dist()
    import torch.distributed as dist

    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """The torch generator of one step's random draws (see the module docstring)."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return g


class StepBatches:
    """Batch sampler: batch ``s`` is a function of (seed, s), so resuming is exact.

    Yields lists of ``(episode index, window seed, frames)`` for this rank's share.
    With buckets, step s first draws a bucket (by weight), then episodes of its
    resolution long enough for its length.
    """

    def __init__(
        self, episodes: list[dict[str, Any]], batch_size: int, *, seed: int, start_step: int, max_steps: int, dist: Dist,
        buckets: list[dict[str, Any]],
    ):
        if batch_size % dist.world:
            raise TrainingError(f"batch_size {batch_size} must be divisible by the number of processes {dist.world}")
        self.batch_size, self.seed = batch_size, seed
        self.start, self.stop, self.dist = start_step, max_steps, dist
        self.buckets = buckets
        self.pools = []
        for b in buckets:
            pool = np.array([i for i, r in enumerate(episodes) if tuple(r["resolution"]) == tuple(b["resolution"]) and r["num_frames"] >= b["frames"]])
            if not len(pool):
                raise TrainingError(f"no training episode is {b['resolution'][0]}x{b['resolution'][1]} with {b['frames']}+ frames (bucket {b})")
            self.pools.append(pool)
        w = np.array([float(b.get("weight", 1.0)) for b in buckets])
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            k = int(rng.choice(len(self.buckets), p=self.weights)) if len(self.buckets) > 1 else 0
            idx = self.pools[k][rng.integers(len(self.pools[k]), size=self.batch_size)]
            seeds = rng.integers(2**31, size=self.batch_size)
            mine = slice(self.dist.rank, None, self.dist.world)
            frames = int(self.buckets[k]["frames"])
            yield [(int(i), int(s), frames) for i, s in zip(idx[mine], seeds[mine])]


# -- the loop ---------------------------------------------------------------------------------------
class FlopAccount:
    """Training FLOPs per step, counted by ``torch.utils.flop_counter`` on the first
    ``samples`` steps of each kind of step (the step kind and batch shape) and their mean
    standing for the rest: counting dispatches every operator through Python, which
    costs a small model a large share of its step, while what varies within a kind
    (caption lengths) moves the count by under 1% (docs/RECIPE.md)."""

    def __init__(self, samples: int = 3):
        self.samples = samples
        self.counts: dict[tuple[Any, ...], list[float]] = {}

    def counter(self, key: tuple[Any, ...]) -> Any:
        """A FlopCounterMode to run this step under, or None when the kind is known."""
        if len(self.counts.get(key, [])) >= self.samples:
            return None
        from torch.utils.flop_counter import FlopCounterMode

        return FlopCounterMode(display=False)

    def record(self, key: tuple[Any, ...], flops: float) -> None:
        self.counts.setdefault(key, []).append(flops)

    def of(self, key: tuple[Any, ...]) -> float:
        c = self.counts[key]
        return sum(c) / len(c)


def learning_rate(cfg: TrainConfig, step: int, flops: float = 0.0) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up, then constant or
    cosine decay to ``min_lr_ratio`` of the peak at ``max_steps`` (with ``max_flops``:
    at that budget, ``flops`` being the FLOPs spent before this step)."""
    o = cfg.optim
    warm = max(1, o.warmup_steps)
    if step < warm:
        return o.lr * (step + 1) / warm
    if o.decay == "cosine":
        if cfg.max_flops:
            progress = min(1.0, flops / float(cfg.max_flops))
        else:
            span = max(1, cfg.max_steps - warm)
            progress = min(1.0, (step - warm) / span)
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return o.lr


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP and torch.compile wrappers (what checkpoints hold:
    a compiled module's state dict would prefix every key with ``_orig_mod.``)."""
    while True:
        if hasattr(module, "module"):
            module = module.module  # DDP
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod  # torch.compile
        else:
            return module


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training. Returns ``{"logs": last step's logs, "module": the
    trained module}`` (with ``eval_only``: the metrics). See the module docstring."""
    from tqdm import tqdm

    from worldsim.data.dataset import ClipDataset
    from worldsim.stages import make_stage

    device = resolve_device(cfg.device)
    dist = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    precision = resolve_precision(cfg.precision, device)
    out = Path(cfg.out)
    stage = make_stage(cfg)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    module = stage.build().to(device)

    # Resume
    start = 0
    state = None
    resume_from = latest_checkpoint(out)
    if resume_from is not None:
        state = load_checkpoint(resume_from, kind=stage.kind)
        stage.check_resume(state)
        unwrap(module).load_state_dict(state["model"])
        start = int(state["step"])
        if dist.main:
            log.info("resuming from %s (step %d)", resume_from, start)
    if cfg.eval_only:
        if state is None:
            raise TrainingError(f"eval_only=true needs a trained run in {out}; it has no checkpoints")
        if state.get("ema"):
            unwrap(module).load_state_dict(state["ema"])
        metrics = stage.evaluate(unwrap(module).eval(), device, precision)
        if dist.main:
            atomic_write_text(out / "eval.json", json.dumps(metrics, indent=1))
            print(json.dumps(metrics))
        return metrics

    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    if state is not None and state.get("optimizer"):
        opt.load_state_dict(state["optimizer"])
    ema = None
    if cfg.optim.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(unwrap(module), multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema))
        if state is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
            ema.n_averaged.fill_(max(1, start))
    train_module: nn.Module = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_module = torch.compile(train_module)

    buckets = cfg.buckets
    dataset = ClipDataset(
        cfg.data, clip_frames=stage.clip_frames, split="train", resolution=None if buckets else stage.resolution, cache=cfg.cache_data,
        mixed=bool(buckets),
    )
    if not buckets:
        buckets = [{"resolution": list(dataset.resolution), "frames": stage.clip_frames}]
    dataset = stage.prepare_data(dataset, buckets) or dataset  # a stage may serve its own items (cached latents)
    batches = StepBatches(dataset.episodes, cfg.batch_size, seed=cfg.seed, start_step=start, max_steps=cfg.max_steps, dist=dist, buckets=buckets)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda"
    )
    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"train {stage.kind}", disable=not dist.main, file=sys.stderr, dynamic_ncols=True)
    logs: dict[str, float] = {}
    step = start
    compute = dict((state or {}).get("compute") or {"flops": 0.0, "wall_s": 0.0})
    flops = FlopAccount()
    tic = time.perf_counter()
    train_module.train()
    for batch in loader:
        if cfg.max_flops and compute["flops"] >= float(cfg.max_flops):
            break
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        gen = step_generator(cfg.seed, step, dist.rank)
        kind = stage.step_kind(gen) if hasattr(stage, "step_kind") else stage.kind
        key = (kind, *batch["frames" if "frames" in batch else "latents"].shape)
        counter = flops.counter(key)
        if counter is not None:
            counter.__enter__()
        with autocast(device, precision):
            loss, logs = (stage.loss(train_module, batch, gen, kind) if hasattr(stage, "step_kind") else stage.loss(train_module, batch, gen))
        if not torch.isfinite(loss):
            last = latest_checkpoint(out)
            raise TrainingError(
                f"the loss is {loss.item()} at step {step + 1}, on episodes {batch.get('episode')} (start frames "
                f"{batch['start'].tolist() if torch.is_tensor(batch.get('start')) else batch.get('start')}); stopped. "
                f"The last good checkpoint is {last}: lower optim.lr, or drop those episodes"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if counter is not None:
            counter.__exit__(None, None, None)
            flops.record(key, float(counter.get_total_flops()) * dist.world)  # forward + backward, every rank
        before = compute["flops"]
        compute["flops"] += flops.of(key)
        if cfg.optim.grad_clip > 0:
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
        lr = learning_rate(cfg, step, before)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        if ema is not None:
            ema.update_parameters(unwrap(module))
        step += 1
        logs = {"loss": loss.item(), **{k: float(v) for k, v in logs.items()}, "lr": lr}
        if dist.main:
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                bar.set_postfix(loss=f"{logs['loss']:.4g}")
                for k, v in logs.items():
                    writer.add_scalar(f"train/{k}", v, step)  # type: ignore[union-attr]
            if step % cfg.sample_every == 0 or step == cfg.max_steps:
                stage.log_samples(writer, step, unwrap(ema.module if ema is not None else module), batch, device, precision)
            budget_spent = bool(cfg.max_flops) and compute["flops"] >= float(cfg.max_flops)  # type: ignore[arg-type]
            every = cfg.checkpoint_every_flops
            flops_mark = bool(every) and int(compute["flops"] // every) > int(before // every)  # type: ignore[operator]
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or budget_spent or flops_mark:
                now = time.perf_counter()
                compute["wall_s"] += now - tic
                tic = now
                stage.before_checkpoint(unwrap(module), ema.module if ema is not None else None, dataset, device, precision)
                _save(out, stage, step, unwrap(module), ema, opt, cfg, compute)
    bar.close()
    if dist.main:
        summary = {
            "stage": stage.kind, "steps": step, "flops": compute["flops"], "wall_s": round(compute["wall_s"], 2),
            "params": sum(p.numel() for p in params), "loss": logs.get("loss"), "logs": logs, "device": str(device), "precision": precision,
            "processes": dist.world,
        }
        atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1, default=float))
    if writer is not None:
        writer.close()
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
    return {"logs": logs, "module": unwrap(module)}


def _save(
    out: Path, stage: Any, step: int, module: nn.Module, ema: Any, opt: torch.optim.Optimizer, cfg: TrainConfig, compute: dict[str, float]
) -> None:
    payload = {
        "kind": stage.kind,
        "step": step,
        "compute": dict(compute),  # training FLOPs and wall seconds up to this step (resumes add to them)
        "config": stage.checkpoint_config(),
        "train": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "model": module.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else {},
        "optimizer": opt.state_dict(),
        **stage.checkpoint_extra(),
    }
    save_checkpoint(checkpoint_path(out, step), payload)
    found = sorted((out / "checkpoints").glob("step_*.pt"))
    for old in found[: max(0, len(found) - cfg.keep_checkpoints)]:
        old.unlink(missing_ok=True)


# -- the command line -------------------------------------------------------------------------------
def config_from_plain(plain: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a resolved config as a plain dict: the known keys are its
    fields, the rest (``ae``, ``model``, ``text``, ``flow``, ...) the stage's options."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    top = {k: v for k, v in plain.items() if k in known and k not in ("optim", "stage_options")}
    optim = OptimConfig(**plain.get("optim", {}))
    options = {k: v for k, v in plain.items() if k not in known}
    return TrainConfig(**top, optim=optim, stage_options=options)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from worldsim.pipeline import run_experiment

    try:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:  # every job of a sweep: its own folder under the sweep's
            OmegaConf.update(cfg, "out", hc.runtime.output_dir, force_add=True)
        if OmegaConf.is_missing(cfg, "out") or OmegaConf.is_missing(cfg, "data"):
            missing = [k for k in ("data", "out") if OmegaConf.is_missing(cfg, k)]
            raise TrainingError(f"missing {' and '.join(missing)}: pass data=DIR out=RUN_DIR, or an experiment (experiment=tiny)")
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        plain.pop("experiment", None)
        run_experiment(plain)  # type: ignore[arg-type]
    except (TrainingError, CheckpointError, ValueError) as e:
        log.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
