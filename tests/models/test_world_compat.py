"""Worlds written before the restructure keep loading (issue 15): the previous bundled
reference model's recorded metadata, verbatim (its training paths left out), on weights
of the same names and shapes, loads, fills the fields added since at their defaults, and
steps. The tensor names are checked against the old file's (their SHA-256 below), so a
renamed module fails here before a user's old export does."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from safetensors.torch import save_file

from worldsim.models.autoencoder import Autoencoder
from worldsim.models.world import WorldConfig, WorldModel, load_world
from worldsim.simulator import LearnedSimulator

# worldsim/assets/reference.safetensors until 2026-12-02 (SHA-256 f91a2644...): its "worldsim" metadata.
OLD_METADATA = json.loads(
    """
{"kind": "dit", "step": 1800, "config": {"dit": {"dim": 256, "depth": 8, "heads": 4, "mlp_ratio": 4.0,
"patch": [1, 2, 2], "latent_channels": 16, "action_dim": 2, "text_dim": 128, "rope_theta": 10000.0}, "text":
{"dim": 128, "depth": 2, "heads": 4, "max_length": 96}, "flow": {"logit_mean": 0.0, "logit_std": 1.0,
"context_noise": 0.1, "mask_probs": {"none": 0.1, "first": 0.5, "last": 0.1, "ends": 0.1, "random": 0.2},
"causal_probability": 0.5, "text_drop": 0.1, "action_drop": 0.1, "events_drop": 0.5}, "ae": {"spatial_factor":
8, "temporal_factor": 1, "latent_channels": 16, "channels": [16, 32, 64, 64], "temporal_kernel": 2,
"latent_norm_weight": 0.0001, "identity": false}, "autoencoder_source": "/root/ws/ae", "data": {"resolution":
[64, 64], "fps": 20, "clip_frames": 16, "buckets": [{"resolution": [64, 64], "frames": 16}]}}, "compute":
{"flops": 178711670292480.0, "wall_s": 3927.484008161}}
"""
)
# SHA-256 of its 249 tensor names, sorted and joined by newlines.
OLD_NAMES_SHA256 = "0c006c18497b208030eedae466925be110887ae78fcd90f7b68832dbef2da837"


def test_a_world_exported_before_the_restructure_loads_and_steps(tmp_path):
    config = WorldConfig.from_dict(OLD_METADATA["config"])
    assert (config.dit.anchor, config.dit.noise_input, config.flow.prediction) == (False, "plain", "velocity")  # added since
    torch.manual_seed(0)
    model, ae = WorldModel(config.dit, config.text), Autoencoder(config.ae)
    tensors = {f"model.{k}": v.half().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"autoencoder.{k}": v.half().contiguous() for k, v in ae.state_dict().items()}
    assert hashlib.sha256("\n".join(sorted(tensors)).encode()).hexdigest() == OLD_NAMES_SHA256
    path = tmp_path / "old.safetensors"
    save_file(tensors, str(path), metadata={"worldsim": json.dumps(OLD_METADATA)})

    world = load_world(str(path))
    assert world.step == 1800 and world.config.dit.dim == 256 and world.config.data.clip_frames == 16
    sim = LearnedSimulator(str(path))
    sim.reset(np.zeros((1, 2, 64, 64, 3), np.uint8), "a red ball bounces", [torch.Generator().manual_seed(0)])
    frame = sim.step(np.zeros((1, 2), np.float32))
    assert frame.shape == (1, 64, 64, 3) and frame.dtype == np.uint8
