"""The autoencoder's reconstructions judged as the physics metrics judge a model: PSNR
and SSIM, and the objects' positions read off the reconstruction by the evaluation
detector (the round trip every latent must survive before dynamics are trained on it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.data.dataset import select_episodes
from worldsim.data.episode import load_episode
from worldsim.evaluate.detect import detect_objects, fixture_colours
from worldsim.frames import to_model, to_uint8
from worldsim.models.autoencoder import Autoencoder
from worldsim.pixel_metrics import psnr, ssim
from worldsim.runtime import autocast
from worldsim.sim import palette


@torch.no_grad()
def evaluate_autoencoder(
    ae: Autoencoder, data: str | Path | list[str], *, device: torch.device | str = "cpu", precision: str = "fp32", episodes: int = 32,
    split: str = "test", min_true_pixels: int = 12,
) -> dict[str, Any]:
    """The reconstruction ceiling on held-out episodes, and the round-trip gate.

    Reports PSNR and SSIM (mean over frames), the object position error through the
    autoencoder (distance between the centroid of each object's colour in the
    reconstruction and in the original, px, mean over objects seen in both), and the
    fraction of (frame, object) pairs where an object visible in the original (3+
    pixels) is missing from the reconstruction. The ``episodes`` are spread evenly
    over the split (every scene and engine), and each figure is also given per scene.

    ``round_trip``: the gate a latent space must pass before dynamics are trained in it
    (docs/RECIPE.md): a mean position error of at most 0.3 px and no object lost in a
    frame where it shows at least ``min_true_pixels`` pixels, in every scene.
    """
    device = torch.device(device)
    roots = data if isinstance(data, (list, tuple)) else [data]
    every = [(Path(r), row) for r in roots for row in select_episodes(r, split=split)]
    if not every:
        raise ValueError(f"no {split} episodes in {roots} to evaluate the autoencoder on")
    pick = np.linspace(0, len(every) - 1, min(episodes, len(every))).round().astype(int)
    rows = [every[i] for i in sorted(set(pick.tolist()))]
    psnrs, ssims, errors, lost, visible = [], [], [], 0, 0
    per_scene: dict[str, dict[str, list[Any]]] = {}
    for root, row in rows:
        ep = load_episode(root / row["path"])
        frames = ep["frames"]
        t = ae.video_frames(ae.latent_frames(len(frames)))
        frames = frames[:t]
        video = to_model(frames, device)[None]
        with autocast(device, precision):
            recon = ae.decode(ae.encode(video))
        out = to_uint8(recon[0])
        psnrs.append(psnr(frames, out))
        ssims.append(ssim(frames, out))
        colours = np.array([palette.rgb(o["colour"]) for o in row["params"]["objects"]])
        others = fixture_colours(row["params"].get("fixtures"))  # the scene's screens: never an object
        truth = detect_objects(frames, colours, min_pixels=3, others=others)
        pred = detect_objects(out, colours, min_pixels=1, others=others)
        both = truth["present"] & pred["present"]
        errors.append(np.linalg.norm(truth["centroids"][both] - pred["centroids"][both], axis=-1))
        lost += int((truth["present"] & ~pred["present"]).sum())
        visible += int(truth["present"].sum())
        shown = truth["areas"] >= min_true_pixels
        sc = per_scene.setdefault(row["scene"], {"psnr": [], "err": [], "lost": [], "visible": [], "lost_shown": 0})
        sc["lost_shown"] += int((shown & ~pred["present"]).sum())
        sc["psnr"].append(psnrs[-1])
        sc["err"].append(errors[-1])
        sc["lost"].append(int((truth["present"] & ~pred["present"]).sum()))
        sc["visible"].append(int(truth["present"].sum()))
    err = np.concatenate(errors) if errors else np.zeros(0)
    scenes = {}
    for name, sc in sorted(per_scene.items()):
        e = np.concatenate(sc["err"])
        scenes[name] = {"psnr": round(float(np.mean(np.concatenate(sc["psnr"]))), 3), "position_error_px": round(float(e.mean()), 4) if len(e) else None,
                        "objects_lost_fraction": round(sum(sc["lost"]) / max(sum(sc["visible"]), 1), 5),
                        f"objects_lost_with_{min_true_pixels}px_shown": sc["lost_shown"]}
    gate = {name: (sc["position_error_px"] is None or sc["position_error_px"] <= 0.3) and sc[f"objects_lost_with_{min_true_pixels}px_shown"] == 0
            for name, sc in scenes.items()}
    return {
        "episodes": len(rows),
        "psnr": round(float(np.mean(np.concatenate(psnrs))), 3),
        "ssim": round(float(np.mean(np.concatenate(ssims))), 4),
        "position_error_px": round(float(err.mean()), 4) if len(err) else None,
        "position_error_px_p95": round(float(np.percentile(err, 95)), 4) if len(err) else None,
        "objects_lost_fraction": round(lost / max(visible, 1), 5),
        "scenes": scenes,
        "round_trip": {"passes": all(gate.values()), "scenes": gate, "rule": f"position error <= 0.3 px and no object lost where it shows "
                       f">= {min_true_pixels} px"},
        "config": dataclasses.asdict(ae.config),
    }
