"""The training loop every stage shares (:mod:`worldsim.training.stages` says what a
stage trains), in the style of DiT's and nanoGPT's ``train.py``: AdamW with linear
warm-up, optional EMA weights, gradient clipping, mixed precision (``precision=auto``
picks bf16 on GPUs and CPUs with native bf16, else fp32), atomic checkpoints with
resume from the latest intact one, TensorBoard scalars and samples, a tqdm bar, and a
compute budget in counted FLOPs (``max_flops``).

Determinism. Batch ``s`` (which clips, which windows) and every random draw of the
loss at step ``s`` come from generators seeded by ``(seed, s, rank)``, so a run that
is stopped and resumed takes exactly the steps an uninterrupted one would.

Distributed. ``torchrun --nproc_per_node=N -m worldsim.train ...`` runs DDP (gloo on
CPU, NCCL on GPU): each rank takes its share of every batch, gradients are averaged,
every rank trains the same kind of step (rank 0's draw) and stops at the same step
(``max_wall_s`` by any rank's clock), only rank 0 writes, all ranks share the run
directory ``out``.
"""

from __future__ import annotations

import contextlib
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

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from worldsim.atomic import atomic_write_text
from worldsim.checkpoint import CheckpointError, CheckpointKindError, checkpoint_path, load_checkpoint, save_checkpoint, step_checkpoints
from worldsim.config import typed
from worldsim.data.dataset import ClipDataset
from worldsim.models.text import pad_text
from worldsim.runtime import autocast, flop_counter, resolve_device, resolve_precision, seeded_generator
from worldsim.training.autoencoder import AutoencoderStage
from worldsim.training.dit import DiTStage
from worldsim.training.stages import AutoencoderStageConfig, DiTStageConfig, Stage

log = logging.getLogger("worldsim.training")


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
    # Count the CPU attention kernel's FLOPs (worldsim before this counted zero for them on
    # a CPU, half a training step of the reference DiT); false reproduces runs of then.
    count_cpu_attention: bool = True
    max_wall_s: float | None = None  # also stop when this run (this process) has trained this many seconds
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
    compile: bool = False  # torch.compile the DiT's forward (compile_model)
    cache_data: bool = False  # keep decoded episodes in memory (per DataLoader worker)
    cache_latents: bool = False  # stage=dit: encode the training episodes once into out/latents (worldsim.data.latents)
    # Buckets of size and length: each step draws one ({"resolution": [H, W], "frames": T,
    # "weight": w}) and a batch of that size; None: one bucket (resolution, clip_frames).
    buckets: list[dict[str, Any]] | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage_options: dict[str, Any] = field(default_factory=dict)  # what the stage itself reads

    def __post_init__(self) -> None:
        for key, least in (("max_steps", 0), ("batch_size", 1), ("clip_frames", 1), ("seed", 0), ("num_workers", 0), ("log_every", 1),
                           ("sample_every", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{key} must be a whole number >= {least}, got {value!r}")
        for key in ("max_wall_s", "checkpoint_every_flops"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf):
                raise ValueError(f"{key} must be a positive number or null, got {value!r}")
        if self.buckets is not None:
            for b in self.buckets:
                res, frames, weight = (b.get("resolution"), b.get("frames"), b.get("weight", 1.0)) if isinstance(b, dict) else (None, None, None)
                if (not isinstance(res, (list, tuple)) or len(res) != 2 or not all(isinstance(x, int) and x > 0 for x in res)
                        or not isinstance(frames, int) or frames < 1 or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf):
                    raise ValueError(f"each of buckets is {{resolution: [H, W], frames: T, weight: w (optional, >= 0)}}, got {b!r}")
            if not sum(float(b.get("weight", 1.0)) for b in self.buckets) > 0:
                raise ValueError(f"buckets need a positive weight somewhere (else none is ever drawn), got {self.buckets}")
        if self.max_flops is not None and not (math.isfinite(float(self.max_flops)) and float(self.max_flops) > 0):
            raise ValueError(f"max_flops must be a positive number of FLOPs (e.g. 6e13) or null, got {self.max_flops}")
        if self.optim.decay not in ("none", "cosine"):
            raise ValueError(f"optim.decay must be none or cosine, got {self.optim.decay!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")


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
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """The torch generator of one step's random draws (see the module docstring)."""
    return seeded_generator(seed, step, rank, stream)


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


class FlopAccount:
    """Training FLOPs per step, counted by ``torch.utils.flop_counter`` on the first
    ``samples`` steps of each kind of step (the step kind and batch shape) and their mean
    standing for the rest: counting dispatches every operator through Python, which
    costs a small model a large share of its step, while what varies within a kind
    (caption lengths) moves the count by under 1% (docs/RECIPE.md).

    ``cpu_attention``: whether attention on a CPU is counted (it is from this version on;
    a run begun before, whose checkpoint does not say so, resumes without it)."""

    def __init__(self, samples: int = 3, counts: dict[str, list[float]] | None = None, cpu_attention: bool = True):
        self.samples = samples
        self.cpu_attention = cpu_attention
        # Keyed by "kind/B/T/..." (what a checkpoint stores, so a resumed run counts on
        # exactly as an uninterrupted one: counting runs each operator through a
        # dispatch mode, which can change which kernel computes it).
        self.counts: dict[str, list[float]] = {k: list(v) for k, v in (counts or {}).items()}

    @staticmethod
    def name(key: tuple[Any, ...]) -> str:
        return "/".join(map(str, key))

    def counter(self, key: tuple[Any, ...]) -> FlopCounterMode | None:
        """A FlopCounterMode to run this step under, or None when the kind is known."""
        return None if len(self.counts.get(self.name(key), [])) >= self.samples else flop_counter(cpu_attention=self.cpu_attention)

    def record(self, key: tuple[Any, ...], flops: float) -> None:
        self.counts.setdefault(self.name(key), []).append(flops)

    def of(self, key: tuple[Any, ...]) -> float:
        c = self.counts[self.name(key)]
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


def compile_model(module: nn.Module) -> nn.Module:
    """``torch.compile`` what a training step spends its arithmetic in, in place: the
    DiT of a world, or the whole module of a stage without one. Static shapes: one
    graph per kind of step. The text encoder stays eager (captions are strings, which a
    compiled frame would guard on), and its tokens reach the compiled DiT padded to the
    encoder's ``max_length`` (masked), since a batch's longest caption would otherwise
    change the shape, and recompile, at nearly every step. The forward is compiled, not
    the module (``nn.Module.compile()`` traces nothing in torch 2.13), so the state dict
    keeps its keys and checkpoints do not change."""
    dit = getattr(module, "dit", None)
    if dit is None:
        module.forward = torch.compile(module.forward, dynamic=False)  # type: ignore[method-assign]
        return module
    compiled = torch.compile(dit.forward, dynamic=False)
    length = int(module.text.config.max_length)

    def forward(x: torch.Tensor, t: torch.Tensor, actions: torch.Tensor, text: Any, **kw: Any) -> torch.Tensor:
        return compiled(x, t, actions, pad_text(text, length), **kw)

    dit.forward = forward  # type: ignore[method-assign]
    return module


def make_stage(cfg: TrainConfig) -> Stage:
    """The stage object for a TrainConfig (``cfg.stage``: autoencoder or dit)."""
    if cfg.stage == "autoencoder":
        return AutoencoderStage(cfg, AutoencoderStageConfig.from_options(cfg.stage_options))
    if cfg.stage == "dit":
        return DiTStage(cfg, DiTStageConfig.from_options(cfg.stage_options))
    raise ValueError(f"unknown stage {cfg.stage!r}; valid stages: autoencoder, dit")


class RunLog:
    """What a run shows and records as it goes (rank 0 only): the progress bar,
    TensorBoard scalars every ``log_every`` steps and the stage's samples."""

    def __init__(self, cfg: TrainConfig, stage: Stage, start: int, main: bool):
        self.cfg, self.stage, self.main = cfg, stage, main
        self.writer = SummaryWriter(str(Path(cfg.out) / "tensorboard")) if main else None
        total = None if cfg.max_flops else cfg.max_steps
        # A bar on a terminal; without one (logs, CI, a background run) a line every log_every steps instead.
        self.lines = main and not sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=start, desc=f"train {stage.kind}", disable=not main or self.lines, file=sys.stderr,
                        dynamic_ncols=True, unit="step")
        self.tic, self.since = time.perf_counter(), start

    def step(self, step: int, logs: dict[str, float], module: nn.Module, batch: dict[str, Any], device: torch.device, precision: str) -> None:
        if not self.main:
            return
        self.bar.update(1)
        last = step == self.cfg.max_steps
        if step % self.cfg.log_every == 0 or last:
            self.bar.set_postfix(loss=f"{logs['loss']:.4g}")
            for k, v in logs.items():
                self.writer.add_scalar(f"train/{k}", v, step)  # type: ignore[union-attr]
            if self.lines:
                now = time.perf_counter()
                log.info("step %d%s loss %.4g lr %.3g (%.2f s/step)", step, "" if self.cfg.max_flops else f"/{self.cfg.max_steps}", logs["loss"],
                         logs.get("lr", 0.0), (now - self.tic) / max(1, step - self.since))
                self.tic, self.since = now, step
        if step % self.cfg.sample_every == 0 or last:
            self.stage.log_samples(self.writer, step, module, batch, device, precision)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


class Checkpointer:
    """When to save (every ``checkpoint_every`` steps, each ``checkpoint_every_flops``,
    at the end) and how: atomically, from the unwrapped module, keeping the newest
    ``keep_checkpoints``."""

    def __init__(self, cfg: TrainConfig, stage: Stage):
        self.cfg, self.stage, self.out = cfg, stage, Path(cfg.out)

    def due(self, step: int, flops_before: float, flops_after: float) -> bool:
        cfg = self.cfg
        spent = bool(cfg.max_flops) and flops_after >= float(cfg.max_flops)  # type: ignore[arg-type]
        every = cfg.checkpoint_every_flops
        crossed = bool(every) and int(flops_after // every) > int(flops_before // every)  # type: ignore[operator]
        return step % cfg.checkpoint_every == 0 or step == cfg.max_steps or spent or crossed

    def save(self, step: int, module: nn.Module, ema: AveragedModel | None, opt: torch.optim.Optimizer, compute: dict[str, float]) -> None:
        payload = {
            "kind": self.stage.kind,
            "step": step,
            "compute": dict(compute),  # training FLOPs and wall seconds up to this step (resumes add to them)
            "config": self.stage.checkpoint_config(),
            "train": json.loads(json.dumps(dataclasses.asdict(self.cfg), default=str)),
            "model": module.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else {},
            "optimizer": opt.state_dict(),
            **self.stage.checkpoint_extra(),
        }
        save_checkpoint(checkpoint_path(self.out, step), payload)
        found = step_checkpoints(self.out)
        for old in found[: max(0, len(found) - self.cfg.keep_checkpoints)]:
            old.unlink(missing_ok=True)


def draw_step(stage: Stage, seed: int, step: int, dist: Dist) -> tuple[str, torch.Generator]:
    """What step ``step`` trains, and this rank's generator for it. Every rank draws the
    kind from its own generator (so its stream is the same with one process or many), and
    trains rank 0's: the same kind on every rank, so the ranks count the same FLOPs, set
    the same learning rate and stop at the same step."""
    gen = step_generator(seed, step, dist.rank)
    kind = stage.step_kind(gen)
    if dist.rank != 0:
        kind = stage.step_kind(step_generator(seed, step, 0))
    return kind, gen


def summed(value: float, dist: Dist, device: torch.device) -> float:
    """``value`` summed over the ranks (each counts the FLOPs of its own share of a batch,
    whose captions differ in length): every rank then holds the same figure, and so sets
    the same learning rate and meets a FLOP budget at the same step."""
    if dist.world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(total)
    return float(total.item())


def agreed(stop: bool, dist: Dist, device: torch.device) -> bool:
    """``stop`` if any rank says so (each rank's own clock may differ): every rank then
    leaves the loop at the same step, none waits for the others in a gradient all-reduce."""
    return summed(float(stop), dist, device) > 0


def resume_state(out: Path, kind: str, *, move_broken: bool = True) -> dict[str, Any] | None:
    """The newest intact checkpoint of a run (None: a fresh run). A checkpoint that does
    not load (truncated by a crash, say) is moved aside to ``checkpoints/broken/`` (under
    a name no earlier one has), with a warning naming it and why, and the one before it
    is used; ``move_broken=False`` (ranks other than 0) only skips it. An intact
    checkpoint of another stage stops the run, moving nothing: ``out`` is another run's."""
    for path in reversed(step_checkpoints(out)):
        try:
            return load_checkpoint(path, kind=kind)
        except CheckpointKindError as e:
            raise TrainingError(
                f"{e}: out={out} holds another stage's run. Resume it with its own stage= "
                f"(stage={kind} was asked for), or give this run another out="
            ) from None
        except CheckpointError as e:
            if not move_broken:
                continue
            aside = path.parent / "broken" / path.name
            aside.parent.mkdir(exist_ok=True)
            n = 1
            while aside.exists():  # a checkpoint moved aside earlier keeps its place
                aside, n = path.parent / "broken" / f"{path.stem}.{n}{path.suffix}", n + 1
            os.replace(path, aside)
            log.warning("%s does not load (%s); moved it to %s and resuming from the checkpoint before it", path, e, aside)
    return None


def check_finite(loss: torch.Tensor, step: int, batch: dict[str, Any], out: Path) -> None:
    if torch.isfinite(loss):
        return
    found = step_checkpoints(out)
    start = batch.get("start")
    raise TrainingError(
        f"the loss is {loss.item()} at step {step + 1}, on episodes {batch.get('episode')} (start frames "
        f"{start.tolist() if torch.is_tensor(start) else start}); stopped. "
        f"The last good checkpoint is {found[-1] if found else None}: lower optim.lr, or drop those episodes"
    )


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training. Returns ``{"logs": last step's logs, "module": the
    trained module}``. See the module docstring."""
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

    state = resume_state(out, stage.kind, move_broken=dist.main)
    start = 0
    if state is not None:
        stage.check_resume(state)
        module.load_state_dict(state["model"])
        start = int(state["step"])
        if dist.main:
            log.info("resuming from %s (step %d)", state["path"], start)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema)) if cfg.optim.ema > 0 else None
    if state is not None:
        if state.get("optimizer"):
            opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
            ema.n_averaged.fill_(max(1, start))
    train_module: nn.Module = module
    if dist.world > 1:
        train_module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        compile_model(module)

    dataset = ClipDataset(
        cfg.data, clip_frames=stage.clip_frames, split="train", resolution=None if cfg.buckets else stage.resolution, cache=cfg.cache_data,
        mixed=bool(cfg.buckets),
    )
    buckets = cfg.buckets or [{"resolution": list(dataset.resolution), "frames": stage.clip_frames}]
    dataset = stage.prepare_data(dataset, buckets) or dataset  # a stage may serve its own items (cached latents)
    batches = StepBatches(dataset.episodes, cfg.batch_size, seed=cfg.seed, start_step=start, max_steps=cfg.max_steps, dist=dist, buckets=buckets)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda"
    )
    if dist.main:
        atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    run_log = RunLog(cfg, stage, start, dist.main)
    checkpoints = Checkpointer(cfg, stage)
    compute = dict((state or {}).get("compute") or {"flops": 0.0, "wall_s": 0.0})
    counts = compute.pop("flop_counts", None)
    # a run resumes counting as it began (a checkpoint from before the choice existed counted without)
    began = compute.get("cpu_attention_counted", cfg.count_cpu_attention if counts is None else False)
    flops = FlopAccount(counts=counts, cpu_attention=bool(began))
    if flops.cpu_attention != cfg.count_cpu_attention:
        log.warning("%s: this run began counting FLOPs %s CPU attention; it resumes counting that way (not as count_cpu_attention=%s "
                    "says), so that its budget (max_flops) means what it did", out, "with" if began else "without", cfg.count_cpu_attention)
    compute["cpu_attention_counted"] = flops.cpu_attention
    logs: dict[str, float] = {}
    step = start
    tic = started = time.perf_counter()
    train_module.train()
    last_saved = start
    for batch in loader:
        if cfg.max_flops and agreed(compute["flops"] >= float(cfg.max_flops), dist, device):
            break
        if cfg.max_wall_s and agreed(time.perf_counter() - started >= float(cfg.max_wall_s), dist, device):
            log.info("max_wall_s=%s reached at step %d", cfg.max_wall_s, step)
            break
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        kind, gen = draw_step(stage, cfg.seed, step, dist)
        key = (kind, *batch["frames" if "frames" in batch else "latents"].shape)
        counter = flops.counter(key)
        # a compiled module runs eagerly while it is counted: Dynamo does not trace under the
        # counter's dispatch mode, and a frame it once skipped it would never compile after
        eager = torch.compiler.set_stance("force_eager") if counter is not None and cfg.compile else contextlib.nullcontext()
        with counter if counter is not None else contextlib.nullcontext(), eager:
            with autocast(device, precision):
                loss, logs = stage.loss(train_module, batch, gen, kind)
            check_finite(loss, step, batch, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        if counter is not None:  # forward + backward, every rank's share summed: the same count on every rank
            flops.record(key, summed(float(counter.get_total_flops()), dist, device))
        before = compute["flops"]
        compute["flops"] += flops.of(key)
        if cfg.optim.grad_clip > 0:
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
        lr = learning_rate(cfg, step, before)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        if ema is not None:
            ema.update_parameters(module)
        step += 1
        logs = {"loss": loss.item(), **{k: float(v) for k, v in logs.items()}, "lr": lr}
        run_log.step(step, logs, ema.module if ema is not None else module, batch, device, precision)
        if dist.main and checkpoints.due(step, before, compute["flops"]):
            now = time.perf_counter()
            compute["wall_s"] += now - tic
            tic = now
            stage.before_checkpoint(module, ema.module if ema is not None else None, dataset, device, precision)
            checkpoints.save(step, module, ema, opt, {**compute, "flop_counts": flops.counts})
            last_saved = step
    if dist.main and step > last_saved:  # stopped by a budget between checkpoints: keep what was trained
        compute["wall_s"] += time.perf_counter() - tic
        stage.before_checkpoint(module, ema.module if ema is not None else None, dataset, device, precision)
        checkpoints.save(step, module, ema, opt, {**compute, "flop_counts": flops.counts})
    run_log.close()
    if dist.main:
        summary = {
            "stage": stage.kind, "steps": step, "flops": compute["flops"], "wall_s": round(compute["wall_s"], 2),
            "params": sum(p.numel() for p in params), "loss": logs.get("loss"), "logs": logs, "device": str(device), "precision": precision,
            "processes": dist.world, "flops_per_step": flops.counts, "cpu_attention_counted": flops.cpu_attention,
        }
        atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1, default=float))
    if dist.world > 1:
        tdist.barrier()
    return {"logs": logs, "module": module}


def config_from_plain(plain: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a resolved config as a plain dict: the known keys are its
    fields, the rest (``ae``, ``model``, ``text``, ``flow``, ...) the stage's options."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    top = {k: v for k, v in plain.items() if k in known and k not in ("optim", "stage_options")}
    optim = typed(OptimConfig, plain.get("optim"), "optim")  # unknown keys and wrong kinds named
    options = {k: v for k, v in plain.items() if k not in known}
    return TrainConfig(**top, optim=optim, stage_options=options)
