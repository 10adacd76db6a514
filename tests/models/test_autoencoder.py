"""The causal video autoencoder: shapes, causality, streaming, learning, checkpoints."""

import subprocess
import sys

import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_checkpoint, require_same, save_checkpoint
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig, load_autoencoder, reconstruction_loss

CASES = [(8, 1, [8, 8, 16, 16]), (4, 1, [8, 8, 16]), (8, 2, [8, 8, 16, 16]), (4, 4, [8, 8, 16])]


def random_ae(sf, tf, channels, seed=0):
    torch.manual_seed(seed)
    ae = Autoencoder(AutoencoderConfig(spatial_factor=sf, temporal_factor=tf, latent_channels=4, channels=channels)).eval()
    for m in ae.modules():  # the real init zeroes residual branches: perturb them so every path matters
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
    return ae


@pytest.mark.parametrize("sf, tf, channels", CASES)
def test_shapes(sf, tf, channels):
    ae = random_ae(sf, tf, channels)
    video = torch.randn(2, 1 + 3 * tf, 3, 32, 48)
    with torch.no_grad():
        z = ae.encode(video)
        assert z.shape == (2, 4, 4, 32 // sf, 48 // sf)
        assert ae.decode(z).shape == video.shape
    assert ae.latent_frames(1 + 3 * tf) == 4 and ae.video_frames(4) == 1 + 3 * tf


@pytest.mark.parametrize("sf, tf, channels", CASES)
def test_changing_frame_t_leaves_earlier_latents_unchanged(sf, tf, channels):
    ae = random_ae(sf, tf, channels)
    video = torch.randn(1, 1 + 4 * tf, 3, 32, 32)
    for t in range(1, video.shape[1]):
        changed = video.clone()
        changed[:, t] += 1.0
        with torch.no_grad():
            a, b = ae.encode(video), ae.encode(changed)
        k = 1 + (t - 1) // tf  # the latent frame that holds video frame t
        assert torch.equal(a[:, :k], b[:, :k]), f"frame {t} leaked into earlier latents"
        assert not torch.allclose(a[:, k:], b[:, k:])


@pytest.mark.parametrize("sf, tf, channels", CASES)
def test_streaming_equals_the_whole_clip(sf, tf, channels):
    ae = random_ae(sf, tf, channels)
    video = torch.randn(2, 1 + 4 * tf, 3, 32, 32)
    with torch.no_grad():
        z = ae.encode(video)
        cache = {}
        parts = [ae.encode_stream(video[:, :1], cache)]
        parts += [ae.encode_stream(video[:, 1 + tf * k : 1 + tf * (k + 1)], cache) for k in range(4)]
        torch.testing.assert_close(torch.cat(parts, 1), z, atol=1e-5, rtol=1e-5)
        cache = {}
        frames = torch.cat([ae.decode_stream(z[:, k : k + 1], cache) for k in range(z.shape[1])], 1)
        torch.testing.assert_close(frames, ae.decode(z), atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="encode_stream takes"):
            ae.encode_stream(video[:, :2], {})


def test_a_tiny_model_overfits_one_clip():
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(spatial_factor=4, latent_channels=4, channels=[8, 8, 16]))
    video = torch.full((1, 3, 3, 16, 16), -1.0)
    seg = torch.zeros(1, 3, 16, 16, dtype=torch.long)
    for t in range(3):  # a red square moving right
        video[0, t, 0, 4:9, 3 + 2 * t : 8 + 2 * t] = 0.8
        seg[0, t, 4:9, 3 + 2 * t : 8 + 2 * t] = 1
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        recon, _ = ae(video)
        loss = reconstruction_loss(video, recon, seg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_the_identity_autoencoder_is_pixel_space():
    ae = load_autoencoder("identity")
    video = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    assert torch.equal(ae.encode(video), video) and torch.equal(ae.decode(video), video)
    assert ae.latent_channels == 3 and ae.spatial_factor == 1


def test_bad_frames_are_refused_with_the_nearest_valid_size():
    ae = random_ae(8, 1, [8, 8, 16, 16])
    with pytest.raises(ValueError, match=r"multiples of 8 \(nearest: 64x64\)"):
        ae.encode(torch.zeros(1, 2, 3, 60, 66))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        ae.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="1 \\+ 2n frames"):
        random_ae(8, 2, [8, 8, 16, 16]).encode(torch.zeros(1, 4, 3, 32, 32))


def test_checkpoint_round_trip_and_refusing_another_config(tmp_path):
    ae = random_ae(4, 1, [8, 8, 16])
    ae.latent_scale.fill_(2.0)
    cfg = {"ae": ae.config.to_dict()}
    save_checkpoint(tmp_path / "run/checkpoints/step_0000010.pt", {"kind": "autoencoder", "step": 10, "config": cfg, "model": ae.state_dict(), "ema": {}})
    back = load_autoencoder(str(tmp_path / "run"))  # a run directory resolves to its latest checkpoint
    for k, v in ae.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    other = AutoencoderConfig(spatial_factor=8, latent_channels=4, channels=[8, 8, 16, 16]).to_dict()
    with pytest.raises(CheckpointError, match="spatial_factor: 4 in the checkpoint, 8 here"):
        require_same(load_checkpoint(tmp_path / "run")["config"]["ae"], other, what="autoencoder", source="run")
    with pytest.raises(CheckpointError, match="'autoencoder' checkpoint; a 'dit' checkpoint is needed"):
        load_checkpoint(tmp_path / "run", kind="dit")
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_checkpoint(tmp_path)


def test_train_cli_resumes_and_evaluates(tiny_data, tmp_path):
    out = tmp_path / "ae"
    base = [sys.executable, "-m", "worldsim.train", "stage=autoencoder", "ae=tiny", f"data={tiny_data}", f"out={out}",
            "batch_size=2", "clip_frames=4", "num_workers=0", "checkpoint_every=2", "sample_every=2", "log_every=1"]
    subprocess.run([*base, "max_steps=2"], check=True, capture_output=True, text=True, cwd=tmp_path)
    first = load_checkpoint(out)
    assert first["step"] == 2 and first["kind"] == "autoencoder"
    subprocess.run([*base, "max_steps=4"], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert load_checkpoint(out)["step"] == 4
    assert (out / "tensorboard").is_dir()
    r = subprocess.run([*base, "eval_only=true", "eval_episodes=2"], check=True, capture_output=True, text=True, cwd=tmp_path)
    import json

    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"psnr", "ssim", "position_error_px", "objects_lost_fraction"} <= set(metrics)
    bad = subprocess.run([*base, "max_steps=6", "ae.latent_channels=8"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "latent_channels: 4 in the checkpoint, 8 here" in bad.stderr
    empty = subprocess.run([*base[:4], f"data={tmp_path / 'nothing'}", f"out={tmp_path / 'x'}", "max_steps=1"], capture_output=True, text=True, cwd=tmp_path)
    assert empty.returncode != 0 and "does not exist" in empty.stderr
