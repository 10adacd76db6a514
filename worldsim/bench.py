"""Benchmarks: ``python -m worldsim.bench generate | agreement | autoencoder | train | step | fidelity``.

Options are flags (``--checkpoint RUN``) or, as in the other entry points,
``key=value`` (``checkpoint=RUN data=DIR``).

Each prints one JSON line: the figures and the references they are measured against,
in the same run on the same machine.

``generate``: per engine and scene at 64x64, frames/s of the whole pipeline
(sample, physics, render, ground truth, captions, write the episode file), frames/s
of the engine rendering the same RGB and instance ids alone (the same scenes, built
once, rendered as many times), their ratio, and the speed-up of ``workers=2`` over
``workers=1`` for the whole generation command.

``agreement``: PyBullet against MuJoCo on the same specs and actions, per scene (see
:func:`bench_agreement`).

``fidelity``: does a trained world keep its objects (teacher-forced one step against
copy-last, autoregressive error and objects lost, count violations, break agreement,
steps/s) on a data folder's test episodes: :mod:`worldsim.evaluate.fidelity`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch._dynamo.utils import counters
from torch.utils.data import default_collate

from worldsim.checkpoint import CheckpointError, world_checkpoint
from worldsim.cli import user_message
from worldsim.config import config_dir
from worldsim.data.dataset import ClipDataset
from worldsim.data.episode import save_episode
from worldsim.data.generation import StreamConfig, generate_stream, make_episode, process_engine
from worldsim.diffusion.flow import FlowConfig, flow_loss, training_inputs
from worldsim.diffusion.sampling import SamplerConfig
from worldsim.evaluate.autoencoder import evaluate_autoencoder
from worldsim.evaluate.fidelity import FidelityConfig, run_fidelity
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig, load_autoencoder
from worldsim.models.dit import DiTConfig
from worldsim.models.text import TextConfig
from worldsim.models.world import WorldModel, load_world, save_world
from worldsim.runtime import autocast, choose_threads, compute_dtype, cpu_has_native_bf16, flop_counter, resident_bytes, resolve_precision
from worldsim.sim.engines import EngineConfig, make_engine
from worldsim.sim.scenes import SCENES, episode_seed, scene_config
from worldsim.sim.simulate import simulate
from worldsim.simulator import LearnedSimulator
from worldsim.training.experiment import split_driver_keys
from worldsim.training.loop import compile_model, config_from_plain, make_stage, step_generator


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def bench_generate(args: argparse.Namespace) -> dict[str, Any]:

    scenes = args.scenes or list(SCENES)
    out: dict[str, Any] = {"bench": "generate", "resolution": [64, 64], "frames": args.frames, "episodes": args.episodes, "results": {}}
    tmp = Path(tempfile.mkdtemp(prefix="worldsim-bench-"))
    try:
        for engine in args.engines:
            for scene in scenes:
                stream = StreamConfig(
                    scene=scene_config(scene), engine=EngineConfig(engine), episodes=args.episodes, frames=args.frames, resolution=(64, 64)
                )
                make_episode(stream, 10_000)  # warm up: imports, GL context, allocators
                eng = process_engine(stream.engine)
                specs = [
                    stream.scene.sample(
                        np.random.default_rng(episode_seed(stream.seed, scene, stream.split, i)), num_frames=args.frames, resolution=(64, 64)
                    )
                    for i in range(args.episodes)
                ]
                pipe_time = render_time = float("inf")
                for _ in range(args.repeats):  # alternate, keep the best of each
                    # Pipeline: everything a worker does per episode, written to disk.
                    t0 = time.perf_counter()
                    for i in range(args.episodes):
                        arrays, meta = make_episode(stream, i)
                        save_episode(tmp / "pipe" / f"{i}.npz", arrays, meta)
                    pipe_time = min(pipe_time, time.perf_counter() - t0)
                    # Render only: the same scenes, built once each, rendered `frames` times.
                    total = 0.0
                    for spec in specs:
                        eng.reset(spec)
                        t0 = time.perf_counter()
                        for _ in range(args.frames):
                            eng.render()
                        total += time.perf_counter() - t0
                    render_time = min(render_time, total)
                pipeline = args.episodes * args.frames / pipe_time
                render = args.episodes * args.frames / render_time
                out["results"][f"{scene}/{engine}"] = {
                    "pipeline_frames_per_s": round(pipeline, 1),
                    "render_only_frames_per_s": round(render, 1),
                    "pipeline_over_render": round(pipeline / render, 3),
                }
            # Workers: the whole command, one stream, cold processes included.
            if args.workers_episodes:
                stream = StreamConfig(
                    scene=scene_config(scenes[0]), engine=EngineConfig(engine), episodes=args.workers_episodes, frames=args.frames
                )
                # Alternate and keep the best of each: this machine's speed drifts
                # by +-20% between runs of a few seconds.
                times = {1: float("inf"), 2: float("inf")}
                for rep in range(args.repeats):
                    for w in (1, 2):
                        d = tmp / f"w{w}-{engine}-{rep}"
                        t0 = time.perf_counter()
                        generate_stream(stream, d, workers=w, progress=False)
                        times[w] = min(times[w], time.perf_counter() - t0)
                out["results"][f"workers/{engine}"] = {
                    "scene": scenes[0],
                    "episodes": args.workers_episodes,
                    "seconds_workers_1": round(times[1], 2),
                    "seconds_workers_2": round(times[2], 2),
                    "speedup_workers_2": round(times[1] / times[2], 3),
                }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine"] = _machine()
    return out


def bench_agreement(args: argparse.Namespace) -> dict[str, Any]:
    """Cross-engine agreement on the same specs and actions (test-split seeds).

    Per scene: how often both engines count the same wall bounces in the first 16
    frames, give the same break / no-break outcome and the same number of hides,
    and how far apart the objects are (px) at frames 8, 16 and the last. This is
    the engine variance that evaluation compares learned rollouts against.
    """
    engines = {name: make_engine(name) for name in ("pybullet", "mujoco")}
    out: dict[str, Any] = {"bench": "agreement", "resolution": [64, 64], "frames": args.frames, "episodes": args.episodes, "results": {}}
    for scene in args.scenes or list(SCENES):
        cfg = scene_config(scene)
        walls, calm, breaks, hides, gaps = [], [], [], [], []
        for i in range(args.episodes):
            rng = np.random.default_rng(episode_seed(0, scene, "test", i))
            spec = cfg.sample(rng, num_frames=args.frames, resolution=(64, 64), split="test")
            a, ea = simulate(spec, engines["pybullet"], cfg.action_source(spec, rng))
            b, eb = simulate(spec, engines["mujoco"], a["actions"])  # the same actions, open loop

            def count(events: list[dict[str, Any]], kind: str) -> int:
                return sum(e["type"] == kind and e["frame"] <= 16 for e in events)

            walls.append(count(ea, "wall") == count(eb, "wall"))
            if not count(ea, "collision") and not count(eb, "collision"):
                calm.append(walls[-1])  # no object met another: no chaos to amplify differences
            hides.append(count(ea, "occlusion") == count(eb, "occlusion"))
            if any(o.shape == "pane" for o in spec.objects):
                breaks.append(any(e["type"] == "break" for e in ea) == any(e["type"] == "break" for e in eb))
            d = np.linalg.norm(a["positions"] - b["positions"], axis=-1).mean(-1)  # (T,) mean over objects
            gaps.append([d[min(8, len(d) - 1)], d[min(16, len(d) - 1)], d[-1]])
        g = np.mean(gaps, 0)
        out["results"][scene] = {
            "wall_bounces_16_agree": round(float(np.mean(walls)), 3),
            "wall_bounces_16_agree_without_collisions": round(float(np.mean(calm)), 3) if calm else None,
            "episodes_without_collisions": len(calm),
            "hides_16_agree": round(float(np.mean(hides)), 3),
            **({"break_agree": round(float(np.mean(breaks)), 3)} if breaks else {}),
            "position_gap_px": {"frame_8": round(float(g[0]), 2), "frame_16": round(float(g[1]), 2), f"frame_{args.frames - 1}": round(float(g[2]), 2)},
        }
    for e in engines.values():
        e.close()
    out["machine"] = _machine()
    return out


def bench_autoencoder(args: argparse.Namespace) -> dict[str, Any]:
    """Encode and decode throughput of an autoencoder at 64x64, batched, per precision."""


    if Path(args.ae).exists():
        ae = load_autoencoder(args.ae)
        name = str(args.ae)
    else:
        conf = Path(config_dir()) / "ae" / f"{args.ae}.yaml"
        if not conf.is_file():
            raise SystemExit(f"unknown ae {args.ae!r}: pass a run directory, a checkpoint, or one of "
                             f"{sorted(p.stem for p in conf.parent.glob('*.yaml'))}")
        ae = Autoencoder(AutoencoderConfig(**OmegaConf.to_container(OmegaConf.load(conf)))).eval()  # type: ignore[arg-type]
        name = args.ae
    f = ae.spatial_factor
    torch.manual_seed(0)
    video = torch.rand(args.batch, 1, 3, 64, 64) * 2 - 1
    latent = torch.randn(args.batch, 1, ae.latent_channels, 64 // f, 64 // f)
    results = {}
    for precision in ("bf16", "fp32"):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            ae.encode(video), ae.decode(latent)  # warm up
            timing = {}
            for what, fn, x in (("encode", ae.encode, video), ("decode", ae.decode, latent)):
                timing[f"{what}_frames_per_s"] = round(args.batch / best_seconds(lambda: fn(x), args.repeats), 1)
        results[precision] = timing
    auto = resolve_precision("auto", torch.device("cpu"))
    return {
        "bench": "autoencoder",
        "model": name,
        "config": dataclasses.asdict(ae.config),
        "resolution": [64, 64],
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        # the headline figures: the precision the library runs at here (precision=auto)
        "precision": auto,
        "encode_frames_per_s": results[auto]["encode_frames_per_s"],
        "decode_frames_per_s": results[auto]["decode_frames_per_s"],
        "by_precision": results,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "precision_auto_picks": auto,
        "machine": _machine(),
    }


def _failure(e: Exception) -> dict[str, str]:
    """An error a benchmark reports instead of a figure: its kind and first line."""
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def best_seconds(fn: Any, repeats: int, device: Any = "cpu", calls: int = 1) -> float:
    """The fastest of ``repeats`` timings of ``fn()`` (each the mean of ``calls`` calls),
    waiting for a GPU's queued work around each; warm ``fn`` up first."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


@dataclasses.dataclass
class _Run:
    """A simulator stepped for timing: ``worlds`` worlds, at least ``steps`` timed steps
    in all (spread over the rounds, at least one a round), after ``warmup`` untimed ones."""

    sim: LearnedSimulator
    worlds: int
    steps: int
    decode: bool = True
    warmup: int = 2


def round_ratio(slow: dict[str, Any], fast: dict[str, Any]) -> float:
    """How many times faster ``fast`` steps than ``slow``, two timings taken together
    in alternating rounds: the median over rounds of the ratio within a round (where
    the host was in the same phase for both), not the ratio of the medians."""
    return round(float(np.median([s / f for s, f in zip(slow["ms_per_step_rounds"], fast["ms_per_step_rounds"], strict=True)])), 2)


def matmul_flops_per_s(dtype: Any, n: int = 2048, repeats: int = 5, device: Any = "cpu") -> float:
    """Dense matrix-product throughput of this machine for a dtype (the peak a model
    could reach), measured on an (n x n) @ (n x n) product on ``device``."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats, device)


def attention_flops_per_s(
    batch: int, heads: int, queries: int, keys: int, head_dim: int, dtype: Any, device: Any = "cpu", repeats: int = 5
) -> float:
    """PyTorch's attention kernel's throughput at one shape (queries and keys per row,
    an additive mask as the KV cache passes), counted as the model's FLOPs count it
    (every query against every key): what this machine's kernel does at the shapes a
    model has, where a short head width keeps it far below the matrix-product peak."""
    shape = (batch, heads, queries, head_dim)
    q = torch.randn(shape, dtype=dtype, device=device)
    k, v = (torch.randn(batch, heads, keys, head_dim, dtype=dtype, device=device) for _ in range(2))
    mask = torch.zeros(1, 1, queries, keys, dtype=dtype, device=device)
    attend = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # noqa: E731
    attend()
    return 4 * batch * heads * queries * keys * head_dim / best_seconds(attend, repeats, device)


def softmax_elements_per_s(length: int, device: Any = "cpu", repeats: int = 5) -> float:
    """This machine's softmax throughput, in elements a second, over fp32 rows of
    ``length`` (an attention row's keys), 1 MiB of them: about the rate at which an
    attention kernel turns scores into weights (PyTorch's take their softmax in fp32
    whatever the inputs' dtype). It includes the standalone softmax's passes over memory,
    which a fused kernel keeps in its tiles, so it errs slow. With few multiply-adds a
    score (a short head), this, not the matrix-product peak, bounds attention."""
    x = torch.randn(max(1, (1 << 18) // length), length, device=device)  # 1 MiB: a kernel's tile stays in cache too
    torch.softmax(x, -1)
    return x.numel() / best_seconds(lambda: torch.softmax(x, -1), repeats, device, calls=10)


_KERNEL_KINDS = (
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("matmul", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul", "_linear_pointwise")),
    ("warp", ("grid_sampler",)),
)


def time_shares(events: Any) -> dict[str, float]:
    """Self CPU time of a profile's operators (a whole step's: the DiT's and the
    decoder's), as shares of their sum, by kind: attention kernels, matrix products,
    the warp's resampling, and every other operator (element-wise work, copies, casts,
    their dispatch)."""
    totals = {kind: 0.0 for kind, _ in _KERNEL_KINDS} | {"other": 0.0}
    for e in events:
        kind = next((k for k, names in _KERNEL_KINDS if any(n in e.key for n in names)), "other")
        totals[kind] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {k: round(v / whole, 3) for k, v in totals.items()}


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of a DiT training step (forward, backward, optimizer) at 64x64.

    The step runs on precomputed latents of the f8 autoencoder (8x8x16 per frame,
    16 tokens per frame with patch 2x2), 16 frames per clip. Model FLOPs are counted
    by ``torch.utils.flop_counter`` on the step itself; ``mfu`` divides the model's
    FLOP/s by the bf16 matrix-product peak measured in the same run (as asked), and
    ``mfu_vs_precision_used`` by the peak of the precision the step ran in.
    """

    conf = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "model" / f"{args.model}.yaml"))
    assert isinstance(conf, dict)
    torch.manual_seed(0)
    world = WorldModel(DiTConfig(**conf, latent_channels=16, text_dim=128), TextConfig())
    opt = torch.optim.AdamW(world.parameters(), lr=1e-4)
    b, frames = args.batch, args.frames
    x0 = torch.randn(b, frames, 16, 8, 8)
    actions = torch.rand(b, frames, 2) * 2 - 1
    captions = ["Two balls bounce in a box under low gravity. The red ball is small, heavy and very bouncy. "
                "The blue ball is large, light and dead. The red ball hits the floor, then the red ball hits the blue ball."] * b
    flow = FlowConfig()
    precision = resolve_precision(args.precision, torch.device("cpu"))

    def step(i: int) -> None:
        inp = training_inputs(x0, flow, torch.Generator().manual_seed(i))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            v = world(inp["x_t"], inp["t"], actions, captions, causal=bool(inp["causal"]), text_drop=inp["text_drop"], action_drop=inp["action_drop"])
            loss = flow_loss(v, inp["target"], inp["context"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm up
    counter = flop_counter()
    with counter:
        step(1)
    flops = counter.get_total_flops()
    best = float("inf")
    for i in range(args.repeats):
        t0 = time.perf_counter()
        step(2 + i)
        best = min(best, time.perf_counter() - t0)
    tokens = b * frames * 16
    # Memory per token: the growth of the process's peak resident memory from a
    # step of this batch to a step of twice the batch (activations scale with tokens).

    def peak_kib() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    before = peak_kib()
    x0, actions, captions = torch.cat([x0, x0]), torch.cat([actions, actions]), captions * 2
    step(99)
    per_token = (peak_kib() - before) * 1024 / tokens
    peak_bf16 = matmul_flops_per_s(torch.bfloat16)
    peak_fp32 = matmul_flops_per_s(torch.float32)
    model_flops = flops / best
    return {
        "bench": "train",
        "model": args.model,
        "parameters": sum(p.numel() for p in world.parameters()),
        "resolution": [64, 64],
        "frames": frames,
        "batch": b,
        "tokens_per_step": tokens,
        "precision": precision,
        "step_seconds": round(best, 4),
        "tokens_per_s": round(tokens / best, 1),
        "model_flops_per_step": flops,
        "model_flops_per_s": round(model_flops / 1e9, 2) * 1e9,
        "matmul_bf16_flops_per_s": round(peak_bf16 / 1e9, 2) * 1e9,
        "matmul_fp32_flops_per_s": round(peak_fp32 / 1e9, 2) * 1e9,
        "mfu": round(model_flops / peak_bf16, 3),
        "mfu_vs_precision_used": round(model_flops / (peak_bf16 if precision == "bf16" else peak_fp32), 3),
        "training_memory_bytes_per_token": round(per_token),
        "machine": _machine(),
    }


def experiment_config(experiment: str, overrides: list[str], data: str) -> Any:
    """The TrainConfig ``python -m worldsim.train experiment=NAME OVERRIDES`` would run,
    on the data folder ``data`` (its process settings dropped, ``out`` a placeholder)."""
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *overrides])
        plain = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise SystemExit(f"bench train: experiment={experiment} {' '.join(overrides)}: {e}") from None
    assert isinstance(plain, dict)
    _, plain = split_driver_keys(plain)
    if plain.get("autoencoder") == "train":
        raise SystemExit("bench train: this experiment trains its autoencoder first; pass autoencoder=RUN (a trained one) or autoencoder=identity")
    if not Path(data, "manifest.jsonl").is_file():
        raise SystemExit(f"bench train: --data {data} is not a generated folder (no manifest.jsonl); "
                         "make one with python -m worldsim.generate, or use the experiment's own (data.dir)")
    plain["data"], plain["out"] = str(data), tempfile.mkdtemp(prefix="worldsim-bench-train-")
    return config_from_plain(plain)


def bench_train_experiment(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of an experiment's own training step, as ``python -m worldsim.train``
    runs it: the experiment's model, stage, batch and loss (each kind of step it mixes:
    the simulator's task and the Sora modes), forward, backward, gradient clipping and
    AdamW on batches of a real data folder, eager and ``compile=true`` (the DiT compiled
    in place, :func:`worldsim.training.loop.compile_model`), each in the precision
    ``precision=auto`` picks. FLOPs a step are counted once per kind of step with the
    loop's counter; FLOP/s are set against the matrix-product peak of that precision,
    measured in the same run, and clips/s of the experiment's mix of kinds weighs each
    kind's time by its share (``flow.simulator_share``)."""
    cfg = experiment_config(args.experiment, args.overrides, args.data)
    device = torch.device("cpu")
    precision = resolve_precision(cfg.precision, device)
    stage = make_stage(cfg)
    dataset = ClipDataset(cfg.data, clip_frames=stage.clip_frames, split="train", resolution=stage.resolution, cache=True)
    buckets = [{"resolution": list(dataset.resolution), "frames": stage.clip_frames}]
    if stage.kind == "dit":
        stage.prepare_data(dataset, buckets, cache=False)  # no latent cache: the step as it runs on frames
        share = float(stage.flow.simulator_share)
        kinds = {"simulator": share, "sequence": 1.0 - share} if 0.0 < share < 1.0 else {"simulator" if share >= 1.0 else "sequence": 1.0}
    else:
        stage.prepare_data(dataset, buckets)
        kinds = {stage.kind: 1.0}
    rng = np.random.default_rng(0)
    idx = rng.integers(len(dataset.episodes), size=cfg.batch_size)
    batch = default_collate([dataset[(int(i), int(rng.integers(2**31)), stage.clip_frames)] for i in idx])

    parameters = 0

    def run(compiled: bool) -> dict[str, Any]:
        nonlocal parameters
        torch.manual_seed(cfg.seed)
        module = stage.build().to(device).train()
        parameters = sum(p.numel() for p in module.parameters())
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        if compiled:
            compile_model(module)

        def step(kind: str, n: int) -> None:
            gen = step_generator(cfg.seed, n)
            if stage.kind == "dit":
                stage.step_kind(gen)  # the loop draws the kind first: the same stream
            with autocast(device, precision):
                loss, _ = stage.loss(module, batch, gen, kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            opt.step()

        out: dict[str, Any] = {}
        for kind in kinds:
            t0 = time.perf_counter()
            for i in range(args.warmup):  # warm-up: a compiled step compiles each variant it meets (causal or not) here
                step(kind, i)
            warm = time.perf_counter() - t0
            times = []
            for i in range(args.repeats):
                t0 = time.perf_counter()
                step(kind, args.warmup + i)
                times.append(time.perf_counter() - t0)
            out[kind] = {"step_seconds": round(float(np.median(times)), 4), "step_seconds_best": round(min(times), 4),
                         "warmup_seconds": round(warm, 2)}
            if not compiled:
                counter = flop_counter()
                with counter:
                    step(kind, 99)
                out[kind]["flops_per_step"] = float(counter.get_total_flops())
        return out

    peak = matmul_flops_per_s(compute_dtype(precision))
    modes = {"eager": run(False)}
    if args.compile:
        modes["compiled"] = run(True)
    for by_kind in modes.values():
        for kind, r in by_kind.items():
            flops = modes["eager"][kind]["flops_per_step"]
            r["flops_per_s"] = round(flops / r["step_seconds"] / 1e9, 2) * 1e9
            r["flops_over_peak"] = round(flops / r["step_seconds"] / peak, 3)
            r["clips_per_s"] = round(cfg.batch_size / r["step_seconds"], 2)
        mix_s = sum(kinds[k] * by_kind[k]["step_seconds"] for k in kinds)
        mix_flops = sum(kinds[k] * modes["eager"][k]["flops_per_step"] for k in kinds)
        by_kind["mix"] = {"step_seconds": round(mix_s, 4), "clips_per_s": round(cfg.batch_size / mix_s, 2),
                          "flops_per_step": mix_flops, "flops_per_s": round(mix_flops / mix_s / 1e9, 2) * 1e9,
                          "flops_over_peak": round(mix_flops / mix_s / peak, 3)}
    result: dict[str, Any] = {
        "bench": "train", "experiment": args.experiment, "overrides": list(args.overrides), "data": str(args.data),
        "parameters": parameters, "batch": cfg.batch_size, "clip_frames": stage.clip_frames,
        "kinds": kinds, "precision": precision, "repeats": args.repeats, "matmul_peak_flops_per_s": round(peak / 1e9, 1) * 1e9,
        **modes,
    }
    if "compiled" in modes:
        result["compiled_speedup"] = round(modes["eager"]["mix"]["step_seconds"] / modes["compiled"]["mix"]["step_seconds"], 3)
    result["machine"] = _machine()
    shutil.rmtree(cfg.out, ignore_errors=True)
    return result


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    """The learned simulator's speed at its resolution, and where the time goes.

    Same model, same machine, one run: for 1, 8 and 64 worlds (``--worlds``), steps/s
    and frames/s with the KV cache, and per step the time in the DiT, in decoding, and
    in the rest (Python and small operations), the model FLOPs per step (counted by
    ``torch.utils.flop_counter``) and the FLOP/s reached against the matrix-product peak
    of the precision used measured in the same run. Of those FLOPs, the attention
    kernels' are counted apart and the kernel's own rate at the step's self-attention
    shape is measured in the same run: ``kernel_limit_ms`` is the step at the matmul
    peak for the rest and at that rate for attention (a model with short heads is
    bounded by its attention kernel long before the matmul peak), ``of_kernel_limit``
    the share of it reached. ``arithmetic_limit_ms`` prices the step's arithmetic itself
    at this machine's measured rates, one after the other: every FLOP at the matmul peak,
    every attention weight through a softmax at ``softmax_elements_per_s``. Both limits
    are estimates at measured rates, not bounds: a kernel overlapping its products with
    its exponentials, or taking them faster than PyTorch's softmax, could beat them. With it
    ``frames_per_s_at_arithmetic_limit`` and ``of_arithmetic_limit``, the share reached. For ``--worlds``, the DiT's operator time by kind
    (attention, matmul, warp, other: ``torch.profiler``). Compiled (``torch.compile``)
    against eager for one world and for ``--worlds`` (with the compile time: the first
    compiled steps, which in a later run of the same code find the kernels in
    Inductor's on-disk cache and only trace; ``graphs_compiled`` and
    ``graphs_from_cache`` say which it was); the cache
    against recomputing the window for one world (eager and compiled) and for 8
    (eager); stepping without decoding (``decode=False``); on a bf16 machine, one world
    in fp32 (cached, its cache against recomputing, and its speed against bf16); and
    resident memory at 10% and 100% of a long single-world rollout (the process's size
    then, not its peak, which hides growth under it; measured first, with one simulator
    alive; Linux only). Runs compared by a ratio (the cache against recomputing,
    compiled against eager, fp32 against bf16, with and without decoding) are timed
    together, in ``--rounds`` alternating rounds: a host's slow phase then slows both
    alike, and each ratio is the median of the ratios within a round
    (``ms_per_step_rounds`` lists a run's rounds; its figures are the medians). The
    model is ``--checkpoint`` (default: the bundled reference model), or with ``--model
    NAME`` an untrained model of that size (speed does not depend on the weights)."""
    tmp = Path(tempfile.mkdtemp(prefix="worldsim-bench-"))
    try:
        if args.model:
            torch.manual_seed(0)
            dit = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "model" / f"{args.model}.yaml"))
            assert isinstance(dit, dict)
            ae = Autoencoder(AutoencoderConfig(identity=True))
            world = WorldModel(DiTConfig(**dit, latent_channels=ae.latent_channels, text_dim=128), TextConfig())
            for p in world.parameters():  # untrained adaLN-Zero blocks would skip their work: wake them up
                if p.abs().sum() == 0:
                    torch.nn.init.normal_(p, std=0.02)
            checkpoint = save_world(str(tmp / "world.pt"), world, ae, resolution=(64, 64), fps=20)
            name = f"untrained {args.model} (pixel space)"
        else:
            checkpoint = world_checkpoint(args.checkpoint)
            name = checkpoint
        sampler = SamplerConfig(steps=args.steps)
        rng = np.random.default_rng(0)
        prompt = "Two balls bounce in a box under low gravity. The red ball is small, heavy and very bouncy. The blue ball is large, light and dead."

        def start(sim: LearnedSimulator, worlds: int) -> None:
            frames = rng.integers(0, 256, (worlds, 4, sim.height, sim.width, 3), dtype=np.uint8)
            sim.reset(frames, prompt, [torch.Generator().manual_seed(i) for i in range(worlds)])

        n_rounds = max(1, args.rounds)

        def together(*runs: _Run) -> list[dict[str, Any]]:
            """Time each run (its own simulator, reset and warmed up first) in ``--rounds``
            alternating rounds, the order reversed every other round (ABBA): a slow phase of
            the host then slows every run alike, and a ratio of two runs is taken round by
            round (:func:`round_ratio`). Each run's figures are the medians over its rounds;
            ``ms_per_step_rounds`` lists the rounds."""
            if len({id(r.sim) for r in runs}) != len(runs):
                raise ValueError("runs timed together need a simulator each")
            for r in runs:
                start(r.sim, r.worlds)
                for _ in range(r.warmup):  # warm up (and fill the cache's first slots; recomputing: the whole window)
                    r.sim.step(np.zeros((r.worlds, 2), np.float32), decode=r.decode)
            rounds: list[list[dict[str, float]]] = [[] for _ in runs]
            for i in range(n_rounds):
                for j in range(len(runs))[:: 1 if i % 2 == 0 else -1]:
                    r = runs[j]
                    r.sim.timings = {k: 0.0 for k in r.sim.timings}
                    for _ in range(max(1, math.ceil(r.steps / n_rounds))):
                        r.sim.step(rng.uniform(-1, 1, (r.worlds, 2)).astype(np.float32), decode=r.decode)
                    t = r.sim.timings
                    n = max(1, t["steps"])
                    rounds[j].append({"step": 1000 * t["step_s"] / n, "dit": 1000 * t["dit_s"] / n, "decode": 1000 * t["decode_s"] / n})
            out = []
            for r, rs in zip(runs, rounds):
                ms = {k: float(np.median([x[k] for x in rs])) for k in ("step", "dit", "decode")}
                per = ms["step"] / 1000
                out.append({"steps_per_s": round(1 / per, 2), "frames_per_s": round(r.worlds / per, 1), "ms_per_step": round(ms["step"], 2),
                            "dit_ms": round(ms["dit"], 2), "decode_ms": round(ms["decode"], 2),
                            "other_ms": round(float(np.median([x["step"] - x["dit"] - x["decode"] for x in rs])), 2),
                            "ms_per_step_rounds": [round(x["step"], 2) for x in rs]})
            return out

        def step_flops(sim: LearnedSimulator, worlds: int) -> tuple[float, float]:
            """A step's model FLOPs, and of them the attention kernels'."""
            start(sim, worlds)
            counter = flop_counter()
            with counter:
                sim.step(np.zeros((worlds, 2), np.float32))
            ops = counter.get_flop_counts().get("Global", {})
            return float(counter.get_total_flops()), float(sum(v for op, v in ops.items() if "scaled_dot_product" in str(op)))

        sim = LearnedSimulator(checkpoint, sampler=sampler)
        dtype = compute_dtype(sim.precision)
        peak = matmul_flops_per_s(dtype, device=sim.device)
        softmax_rate = 0.0  # measured at the first batch, over a row of the cache's keys
        dit = sim.model.dit.config
        head_width = dit.dim // dit.heads
        # memory over a long single-world rollout, first, while this is the only simulator: the process's
        # resident memory now (not its peak, which an earlier, larger batch would set and hide growth under)
        start(sim, 1)
        marks = []
        for i in range(args.long_steps):
            sim.step(rng.uniform(-1, 1, (1, 2)).astype(np.float32))
            if i in (args.long_steps // 10, args.long_steps - 1):
                marks.append(resident_bytes())
        recompute_sim = LearnedSimulator(checkpoint, sampler=sampler, use_cache=False)
        single_steps, batched_steps = args.single_steps, args.batched_steps
        # what a ratio is taken of, timed together (recomputing warmed up until the window is full: every
        # timed step recomputes all of it): one world cached, recomputing, and stepped without decoding
        # (another simulator); on a bf16 machine, one world in fp32 (one world's small products and casts:
        # bf16 autocast can cost more than it saves), cached and recomputing; 8 worlds cached and recomputing
        runs = [_Run(sim, 1, single_steps), _Run(recompute_sim, 1, max(5, single_steps // 3), warmup=sim.window),
                _Run(LearnedSimulator(checkpoint, sampler=sampler), 1, single_steps, decode=False)]
        if sim.precision == "bf16":
            runs += [_Run(LearnedSimulator(checkpoint, sampler=sampler, precision="fp32"), 1, single_steps),
                     _Run(LearnedSimulator(checkpoint, sampler=sampler, precision="fp32", use_cache=False), 1,
                          max(5, single_steps // 3), warmup=sim.window)]
        single, recompute, latent, *fp32 = together(*runs)
        latent["speedup_over_decoding"] = round_ratio(single, latent)
        fp32_single = None
        if fp32:
            fp32_single = fp32[0] | {"kv_cache_speedup": round_ratio(fp32[1], fp32[0]), "speedup_over_bf16": round_ratio(single, fp32[0])}
        eight, recompute_8 = together(_Run(sim, 8, batched_steps), _Run(recompute_sim, 8, max(3, batched_steps // 3), warmup=sim.window))
        timings = {1: single, 8: eight}
        if args.worlds not in timings:
            timings[args.worlds] = together(_Run(sim, args.worlds, batched_steps))[0]
        worlds = {}
        limits: dict[int, tuple[float, float]] = {}  # per number of worlds: the kernel and arithmetic limits (s), unrounded
        for n in sorted(timings):
            r = timings[n]
            flops, attention = step_flops(sim, n)
            cache = sim._state["cache"]
            # the kernel's rate at this step's own self-attention shape (a frame's queries against the whole ring)
            # (cross-attention is priced at this rate too; over a short text it is slower per FLOP, so the limit errs low)
            attention_rate = attention_flops_per_s(n * sim._state["branches"], dit.heads, cache.tokens, (cache.window + 1) * cache.tokens,
                                                   head_width, dtype, sim.device)
            softmax_rate = softmax_rate or softmax_elements_per_s((cache.window + 1) * cache.tokens, sim.device)
            limit_s = (flops - attention) / peak + attention / attention_rate
            # the arithmetic itself: every FLOP at the matmul peak, and every attention weight (a score: 4 x head width
            # FLOPs, its product with the query and with the value) through a softmax at this machine's rate
            weights = attention / (4 * head_width)
            arithmetic_s = flops / peak + weights / softmax_rate
            r["model_flops_per_step"] = flops
            r["attention_flops_per_step"] = attention
            r["flops_per_s"] = round(flops / (r["ms_per_step"] / 1000) / 1e9, 2) * 1e9
            r["flops_over_peak"] = round(r["flops_per_s"] / peak, 3)
            r["attention_kernel_flops_per_s"] = round(attention_rate / 1e9, 1) * 1e9
            r["kernel_limit_ms"] = round(1000 * limit_s, 2)
            r["of_kernel_limit"] = round(1000 * limit_s / r["ms_per_step"], 3)
            r["attention_weights_per_step"] = weights
            r["arithmetic_limit_ms"] = round(1000 * arithmetic_s, 3)
            r["frames_per_s_at_arithmetic_limit"] = round(n / arithmetic_s, 1)
            r["of_arithmetic_limit"] = round(1000 * arithmetic_s / r["ms_per_step"], 3)
            worlds[str(n)] = r
            limits[n] = (limit_s, arithmetic_s)
        single = worlds["1"]
        if sim.device.type == "cpu":  # where a batched step's time goes, by kind of kernel
            start(sim, args.worlds)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(2):
                    sim.step(np.zeros((args.worlds, 2), np.float32))
            worlds[str(args.worlds)]["time_shares"] = time_shares(prof.key_averages())
        compiled: dict[str, Any] = {}
        if args.compile:
            try:
                csim = LearnedSimulator(checkpoint, sampler=sampler, compile=True)
                for n in sorted({1, args.worlds}):
                    tic, cache = time.perf_counter(), dict(counters["inductor"])
                    start(csim, n)
                    for _ in range(3):  # compile (one graph per kind of call and batch size)
                        csim.step(np.zeros((n, 2), np.float32))
                    compile_s = time.perf_counter() - tic
                    # graphs Inductor compiled, and graphs it found in its on-disk cache (a warm cache: tracing only)
                    graphs = {k: counters["inductor"][k] - cache.get(k, 0) for k in ("fxgraph_cache_miss", "fxgraph_cache_hit")}
                    if not csim.compiled:
                        compiled = {"error": "compiling failed; the simulator fell back to eager (see the warning)"}
                        break
                    steps = single_steps if n == 1 else batched_steps
                    r, eager = together(_Run(csim, n, steps), _Run(sim, n, steps))  # against eager, in the same rounds
                    r["compile_s"] = round(compile_s, 1)
                    r["graphs_compiled"], r["graphs_from_cache"] = graphs["fxgraph_cache_miss"], graphs["fxgraph_cache_hit"]
                    r["eager_ms_per_step"] = eager["ms_per_step"]
                    r["speedup_over_eager"] = round_ratio(eager, r)
                    r["of_kernel_limit"] = round(1000 * limits[n][0] / r["ms_per_step"], 3)
                    r["of_arithmetic_limit"] = round(1000 * limits[n][1] / r["ms_per_step"], 3)
                    compiled[str(n)] = r
            except Exception as e:  # a compiler that fails here is reported, not fatal
                compiled = _failure(e)
            if "1" in compiled:  # the cache against recomputing, both compiled (one graph a history length)
                try:
                    rsim = LearnedSimulator(checkpoint, sampler=sampler, use_cache=False, compile=True)
                    start(rsim, 1)
                    for _ in range(rsim.window + 1):  # compile (one graph a history length)
                        rsim.step(np.zeros((1, 2), np.float32))
                    if rsim.compiled:
                        r, cached = together(_Run(rsim, 1, max(5, single_steps // 3), warmup=rsim.window), _Run(csim, 1, single_steps))
                        compiled["recomputed_window_single"] = r | {"cached_ms_per_step": cached["ms_per_step"]}
                        compiled["kv_cache_speedup"] = round_ratio(r, cached)
                except Exception as e:
                    compiled["recomputed_window_single"] = _failure(e)
        return {
            "bench": "step",
            "checkpoint": name,
            "resolution": [sim.height, sim.width],
            "sampler": {"method": sim.sampler.method, "steps": sim.sampler.steps},
            "window": sim.window,
            "precision": sim.precision,
            "threads": torch.get_num_threads(),
            "rounds": n_rounds,
            "steps_per_s_single": single["steps_per_s"],
            f"frames_per_s_{args.worlds}_worlds": worlds[str(args.worlds)]["frames_per_s"],
            "kv_cache_speedup": round_ratio(recompute, single),
            "kv_cache_speedup_8_worlds": round_ratio(recompute_8, eight),
            "worlds": worlds,
            "recomputed_window_single": recompute,
            "recomputed_window_8_worlds": recompute_8,
            "latents_only_single": latent,
            "fp32_single": fp32_single,  # bf16 machines: one world in fp32, its cache against recomputing, against bf16
            "compiled": compiled or None,  # per number of worlds, with the compile time and the speedup over eager
            "matmul_peak_flops_per_s": round(peak / 1e9, 1) * 1e9,
            "softmax_elements_per_s": round(softmax_rate / 1e6, 1) * 1e6,
            "rollout_steps": args.long_steps,
            # resident memory at 10% and at the end of the rollout (None: --long-steps 0, or not Linux)
            "memory_mib_at_10_percent": round(marks[0] / 2**20, 1) if marks and marks[0] is not None else None,
            "memory_mib_at_end": round(marks[-1] / 2**20, 1) if marks and marks[-1] is not None else None,
            "machine": _machine(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_roundtrip(args: argparse.Namespace) -> dict[str, Any]:
    """The autoencoder round-trip gate on a data folder's test split (worldsim.evaluate.autoencoder)."""
    if args.ae == "identity":
        ae = load_autoencoder("identity")
    else:
        try:
            ae = load_world(world_checkpoint(args.ae)).autoencoder  # a world: its autoencoder
        except CheckpointError:
            ae = load_autoencoder(args.ae)  # an autoencoder run
    return {"bench": "roundtrip", "ae": args.ae, **evaluate_autoencoder(ae.eval(), args.data, episodes=args.episodes)}


def bench_fidelity(args: argparse.Namespace) -> dict[str, Any]:

    return run_fidelity(FidelityConfig(
        checkpoint=args.checkpoint, data=args.data, scenes=args.scenes, engine=None if args.engine == "any" else args.engine, episodes=args.episodes,
        first_episode=args.first_episode,
        context=args.context, horizon=args.horizon, sampler_steps=args.steps, method=args.method, context_noise=args.context_noise,
        seed=args.seed, speed_steps=args.speed_steps, device=args.device, precision=args.precision, compile=args.compile,
    ))


LIST_OPTIONS = ("scenes", "engines")  # key=a,b gives the list [a, b]


def flags(argv: list[str], known: set[str] | None = None) -> list[str]:
    """``key=value`` arguments as ``--key value`` (``sampler_steps=4`` -> ``--sampler-steps 4``;
    ``scenes=a,b`` -> ``--scenes a b``; a switch with a ``--no-`` form, ``compile=true`` ->
    ``--compile``, ``compile=false`` -> ``--no-compile``); paths may hold ``=`` and ``,``.
    With ``known`` (option strings), only keys that name one: the rest stay as they are
    (``bench train --experiment``'s Hydra overrides, ``batch_size=32``)."""
    out = []
    for a in argv:
        k, _, v = a.partition("=")
        name = k.replace("_", "-")
        if not a.startswith("-") and v and k.replace("_", "").isalnum() and (known is None or f"--{name}" in known):
            if known is not None and f"--no-{name}" in known and v.lower() in ("true", "false"):
                out.append(f"--{name}" if v.lower() == "true" else f"--no-{name}")
            else:
                out += [f"--{name}", *(v.split(",") if k in LIST_OPTIONS else [v])]
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worldsim.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs other jobs leave free, at least 1)")
    sub = parser.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generate", help="episode generation: pipeline vs render-only, workers speed-up")
    g.add_argument("--engines", nargs="+", default=["pybullet", "mujoco"])
    g.add_argument("--scenes", nargs="+", default=None, help="default: every scene")
    g.add_argument("--episodes", type=int, default=24, help="episodes per scene and engine")
    g.add_argument("--frames", type=int, default=32)
    g.add_argument("--workers-episodes", type=int, default=320, help="episodes for the workers comparison (0: skip)")
    g.add_argument("--repeats", type=int, default=2, help="alternating repeats of the workers comparison (best kept)")
    a = sub.add_parser("agreement", help="PyBullet vs MuJoCo on the same specs and actions")
    a.add_argument("--scenes", nargs="+", default=None, help="default: every scene")
    a.add_argument("--episodes", type=int, default=100)
    a.add_argument("--frames", type=int, default=32)
    e = sub.add_parser("autoencoder", help="encode / decode frames per second at 64x64")
    e.add_argument("--ae", default="f8", help="an architecture in conf/ae, a run directory or a checkpoint")
    e.add_argument("--batch", type=int, default=64)
    e.add_argument("--repeats", type=int, default=5)
    t = sub.add_parser("train", help="DiT training-step throughput and model FLOP utilisation")
    t.add_argument("--model", default="dit_s", help="a DiT size in conf/model")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--frames", type=int, default=16)
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--warmup", type=int, default=4, help="with --experiment: untimed steps of each kind first (compiles happen there)")
    t.add_argument("--experiment", default=None, help="instead, time this experiment's own training step (conf/experiment), on --data")
    t.add_argument("--data", default=None, help="with --experiment: a generated folder to take the batch from")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="with --experiment: also time compile=true (--no-compile skips)")
    t.add_argument("overrides", nargs="*", help="with --experiment: Hydra overrides of the experiment (model.dim=96 flow.logit_mean=0)")
    st = sub.add_parser("step", help="learned simulator steps per second, batched frames per second, KV cache speed-up")
    st.add_argument("--checkpoint", default=None, help="a DiT run, checkpoint or export (default: the bundled reference model)")
    st.add_argument("--model", default=None, help="instead, an untrained model of this size (conf/model)")
    st.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="also time torch.compile (--no-compile skips)")
    st.add_argument("--steps", type=int, default=None, help="sampler steps per frame (default: the model's own)")
    st.add_argument("--worlds", type=int, default=64)
    st.add_argument("--single-steps", type=int, default=30)
    st.add_argument("--batched-steps", type=int, default=10)
    st.add_argument("--long-steps", type=int, default=1000, help="a single-world rollout this long, for its resident memory (0: skip)")
    st.add_argument("--rounds", type=int, default=4, help="runs compared (cached and recomputing, compiled and eager, fp32 and "
                    "bf16, with and without decoding) alternate in this many rounds (even: each order as often), their steps "
                    "spread over them")
    rt = sub.add_parser("roundtrip", help="the autoencoder round-trip gate: positions and objects through encode-decode")
    rt.add_argument("--ae", default="identity", help="identity, an autoencoder run, or a world checkpoint or export (its autoencoder)")
    rt.add_argument("--data", required=True)
    rt.add_argument("--episodes", type=int, default=64, help="spread over the test split's scenes and engines")
    fi = sub.add_parser("fidelity", help="does a trained world keep its objects: one step, rollouts, count violations, speed")
    fi.add_argument("--checkpoint", required=True, help="a DiT run directory, checkpoint or export")
    fi.add_argument("--data", required=True, help="a generated folder with a test split")
    fi.add_argument("--scenes", nargs="+", default=None, help="default: every scene of the data")
    fi.add_argument("--engine", default="pybullet", help="pybullet | mujoco | any")
    fi.add_argument("--episodes", type=int, default=16, help="per scene")
    fi.add_argument("--first-episode", type=int, default=0, help="read the split's episodes from this index on")
    fi.add_argument("--context", type=int, default=4)
    fi.add_argument("--horizon", type=int, default=16)
    fi.add_argument("--steps", type=int, default=None, help="sampler steps per frame (default: the model's own)")
    fi.add_argument("--method", default="euler", choices=["euler", "heun"])
    fi.add_argument("--context-noise", type=float, default=None, help="noise level of cached frames (default: the sampler's)")
    fi.add_argument("--seed", type=int, default=0)
    fi.add_argument("--speed-steps", type=int, default=20, help="single-world steps timed (0: skip)")
    fi.add_argument("--device", default="auto")
    fi.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    fi.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                    help="step the compiled DiT (torch.compile; the first steps of each batch size compile)")
    argv = sys.argv[1:] if argv is None else argv
    what = next((a for a in argv if a in sub.choices), None)  # key=value names an option of this command (or a global one)
    known = set(parser._option_string_actions) | (set(sub.choices[what]._option_string_actions) if what else set())
    argv = flags(argv, known)
    if "--threads" in argv[1:]:  # a process setting: taken wherever it is given
        i = argv.index("--threads")
        argv = argv[i : i + 2] + argv[:i] + argv[i + 2 :]
    args = parser.parse_args(argv)
    try:
        result = _run(parser, args)
    except (ValueError, FloatingPointError) as e:  # a user's mistake (a missing checkpoint, a folder that is not data, ...), a diverged model: its message
        raise SystemExit(f"error: {user_message(e)}") from None
    print(json.dumps(result))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    choose_threads(args.threads)
    if args.what == "fidelity":
        result = bench_fidelity(args)
    elif args.what == "roundtrip":
        result = bench_roundtrip(args)
    elif args.what == "step":
        result = bench_step(args)
    elif args.what == "train":
        if args.experiment is None and args.overrides:
            parser.error(f"bench train: {' '.join(args.overrides)}: overrides go with --experiment NAME")
        if args.experiment is not None and args.data is None:
            parser.error("bench train --experiment NAME needs --data DIR (a generated folder)")
        result = bench_train_experiment(args) if args.experiment else bench_train(args)
    elif args.what == "autoencoder":
        result = bench_autoencoder(args)
    elif args.what == "generate":
        result = bench_generate(args)
    elif args.what == "agreement":
        result = bench_agreement(args)
    return result


if __name__ == "__main__":
    main()
