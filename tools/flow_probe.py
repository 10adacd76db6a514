"""How well a flow moves objects (docs/RECIPE.md, rounds 14-15), in two modes.

    python tools/flow_probe.py DATA --checkpoint CHECKPOINT [--scene bouncing_balls] [--episodes 8]
    python tools/flow_probe.py DATA --oracle [--scene bouncing_balls] [--episodes 32]

With a ``model.warp`` checkpoint: for test episodes of DATA (a folder of ``python -m
worldsim.generate``), the simulator is reset on 4 true frames and steps once; the flow of
its last DiT call, averaged over each object's pixels in the true next frame, is compared
with that object's centroid shift (objects of at least 12 pixels in both frames). Prints
one JSON line: the mean error and the mean length of the flow and of the true motion, in
pixels.

With ``--oracle`` (no model): what resampling along the *true* motion does to objects
over 16 steps. From the 4th frame of each test episode, the frame is warped 16 times,
each by the flow ``object_motion`` reads from the segmentation (the target of
``flow.motion_weight``), and the frames are judged as the fidelity probe judges a
rollout (objects lost, position error at steps 1, 4 and 16). One JSON line per
resampling mode and target: ``both`` (the motion where each object is and where it
was: today's target) and ``now`` (only where it is: round 14's, which leaves a copy
behind). Pixel-space data only (the flow is in latent pixels; here latent = pixel).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import worldsim.models.dit as dit_module
from worldsim.data.dataset import select_episodes
from worldsim.data.episode import load_episode
from worldsim.diffusion.flow import object_motion
from worldsim.evaluate.fidelity import FidelityConfig, _compare, _episodes


def model_flow(checkpoint: str, data: str, scene: str, episodes: int) -> dict:
    from worldsim.simulator import LearnedSimulator

    sim = LearnedSimulator(checkpoint, precision="fp32")
    if not sim.config.dit.warp:
        sys.exit(f"error: {checkpoint} was not trained with model.warp: it outputs no flow")
    flows: list[torch.Tensor] = []
    inner = dit_module.warp_frames  # what DiT.forward calls (on a CPU, warp outside a compiled graph: patching warp misses it)
    dit_module.warp_frames = lambda frames, flow, *a: (flows.append(flow.detach().float()), inner(frames, flow, *a))[1]
    rows = select_episodes(data, split="test", scenes=[scene])[:episodes]
    if not rows:
        sys.exit(f"error: no test episodes of {scene} in {data}")
    err, length, truth = [], [], []
    for row in rows:
        ep = load_episode(Path(data) / row["path"])
        frames, seg = ep["frames"], ep["segmentation"]
        for start in (4, 12):
            sim.reset(frames[start - 4 : start][None], row["caption"], [torch.Generator().manual_seed(0)])
            flows.clear()
            sim.step(np.zeros((1, sim.action_dim), np.float32))
            flow = flows[-1][0, -1].numpy()  # (2, H, W) the last call's, for the new frame
            for o in range(1, int(row["num_objects"]) + 1):
                now, before = seg[start] == o, seg[start - 1] == o
                if now.sum() < 12 or before.sum() < 12:
                    continue
                ys, xs = np.nonzero(now)
                yb, xb = np.nonzero(before)
                v = np.array([xs.mean() - xb.mean(), ys.mean() - yb.mean()])
                f = flow[:, now].mean(1)
                err.append(np.linalg.norm(f - v))
                length.append(np.linalg.norm(f))
                truth.append(np.linalg.norm(v))
    return {"checkpoint": checkpoint, "objects": len(err), "flow_error_px": round(float(np.mean(err)), 3),
            "flow_length_px": round(float(np.mean(length)), 3), "motion_length_px": round(float(np.mean(truth)), 3)}


def oracle(data: str, scene: str, episodes: int, context: int = 4, horizon: int = 16) -> list[dict]:
    cfg = FidelityConfig(checkpoint="-", data=data, scenes=[scene], episodes=episodes, context=context, horizon=horizon)
    eps = _episodes(cfg, scene)
    if not eps:
        sys.exit(f"error: no test episodes of {scene} in {data}")
    out = []
    for target in ("both", "now"):
        for mode in ("bicubic", "bilinear"):
            err, found, lost, shown = (np.zeros(horizon) for _ in range(4))
            for ep in eps:
                seg = ep.segmentation
                if ep.frames.shape[1:3] != seg.shape[1:]:
                    sys.exit("error: --oracle needs frames and segmentation of the same size")
                ids = torch.from_numpy(np.where(ep.objects, seg, 0).astype(np.int64))[None]  # objects only
                flow, _ = object_motion(ids, tuple(seg.shape[1:]), max(int(ids.max()), 1))  # (1, T, 2, H, W)
                if target == "now":
                    flow = flow * (ids[:, :, None] > 0)
                x = torch.from_numpy(ep.frames[context - 1]).permute(2, 0, 1).float()[None, None] / 127.5 - 1
                frames = []
                for j in range(horizon):
                    x = dit_module.warp(x, flow[:, context + j : context + j + 1], mode).clamp(-1, 1)
                    frames.append(((x[0, 0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy())
                e, n, lo, sh, _ = _compare(ep.frames[context : context + horizon], np.stack(frames), ep, ep.visible[context : context + horizon], cfg.min_true_pixels)
                err, found, lost, shown = err + e, found + n, lost + lo, shown + sh
            at = [s - 1 for s in (1, 4, 16) if s <= horizon]
            out.append({"target": target, "mode": mode, "episodes": len(eps),
                        "objects_lost": {f"at_{i + 1}": round(float(lost[i] / max(shown[i], 1)), 4) for i in at},
                        "objects_lost_mean": round(float(lost.sum() / max(shown.sum(), 1)), 4),
                        "position_error_px": {f"at_{i + 1}": round(float(err[i] / max(found[i], 1)), 3) for i in at}})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python tools/flow_probe.py", description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--checkpoint")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--scene", default="bouncing_balls")
    p.add_argument("--episodes", type=int)
    a = p.parse_args(argv)
    if bool(a.checkpoint) == a.oracle:
        p.error("give --checkpoint CHECKPOINT or --oracle (one of them)")
    if a.oracle:
        for line in oracle(a.data, a.scene, a.episodes or 32):
            print(json.dumps(line))
    else:
        print(json.dumps(model_flow(a.checkpoint, a.data, a.scene, a.episodes or 8)))


if __name__ == "__main__":
    main()
