"""Sora-style sampling (issue 8): every mode at trained and untrained sizes, given
frames kept exactly, prompt expansion round trips, bucketed training, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.sampler import MODES, SampleConfig, SampleError, Sampler
from worldsim.sampler import run_sample as run


@pytest.fixture(scope="module")
def sampler(tiny_world):
    return Sampler(str(tiny_world), device="cpu", precision="fp32")


def _clip(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(32, 32), (24, 40)], ids=["trained", "unseen"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_asked_size_and_keeps_given_frames(sampler, mode, size):
    h, w = size
    a, b = _clip(5, h, w, 1), _clip(5, h, w, 2)
    inputs = {"t2v": [], "loop": [], "connect": [a, b]}.get(mode, [a])
    frames, given = sampler.generate(mode, "two bouncy balls", frames=6, resolution=size, inputs=inputs, context=2, steps=2, seed=3)
    assert frames.shape == (6, h, w, 3) and frames.dtype == np.uint8
    expected_given = {
        "t2v": [0, 0, 0, 0, 0, 0],
        "i2v": [1, 0, 0, 0, 0, 0],
        "extend": [1, 1, 0, 0, 0, 0],
        "extend_backward": [0, 0, 0, 0, 1, 1],
        "connect": [1, 1, 0, 0, 1, 1],
        "loop": [1, 0, 0, 0, 0, 0],
        "edit": [0, 0, 0, 0, 0, 0],
    }[mode]
    assert given.tolist() == [bool(x) for x in expected_given]
    if mode == "i2v":
        np.testing.assert_array_equal(frames[0], a[0])
    if mode == "extend":
        np.testing.assert_array_equal(frames[:2], a[-2:])
    if mode == "extend_backward":
        np.testing.assert_array_equal(frames[-2:], a[:2])
    if mode == "connect":
        np.testing.assert_array_equal(frames[:2], a[-2:])
        np.testing.assert_array_equal(frames[-2:], b[:2])


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(sampler):
    one = sampler.generate("t2v", "a red ball", frames=4, steps=2, seed=5)[0]
    two = sampler.generate("t2v", "a red ball", frames=4, steps=2, seed=5)[0]
    three = sampler.generate("t2v", "a red ball", frames=4, steps=2, seed=6)[0]
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, three)


def test_edit_strength_zero_returns_the_input(sampler):
    """SDEdit at strength 0 noises nothing and integrates no time: the clip comes back
    (through the identity autoencoder: exactly)."""
    clip = _clip(4, 32, 32, 7)
    frames, _ = sampler.generate("edit", "a blue ball", frames=4, inputs=[clip], strength=0.0, steps=2)
    np.testing.assert_array_equal(frames, clip)


def test_the_cli_writes_sample_files_from_an_episode_a_video_and_an_image(tiny_world, tiny_data, tmp_path):
    import imageio.v3 as iio

    from worldsim.data.episode import load_episode
    from worldsim.data.manifest import read_manifest

    row = read_manifest(tiny_data)[0]
    episode = tiny_data / row["path"]
    frames = load_episode(episode)["frames"]
    iio.imwrite(tmp_path / "first.png", frames[0])
    info = run(SampleConfig(checkpoint=str(tiny_world), mode="i2v", prompt="two balls", input=str(tmp_path / "first.png"),
                            frames=4, steps=2, out=str(tmp_path / "i2v"), precision="fp32"))
    with np.load(tmp_path / "i2v" / "sample.npz") as z:
        assert z["frames"].shape == (4, 32, 32, 3) and z["frames"].dtype == np.uint8
        np.testing.assert_array_equal(z["frames"][0], frames[0])
    assert (tmp_path / "i2v" / "sample.mp4").stat().st_size > 0
    assert info["given"] == [True, False, False, False]
    saved = json.loads((tmp_path / "i2v" / "sample.json").read_text())
    assert saved["prompt"] == "two balls" and saved["caption"].startswith("Two balls bounce in a box")  # expanded
    run(SampleConfig(checkpoint=str(tiny_world), mode="connect", prompt="two balls", input=f"{episode},{episode}",
                     frames=6, steps=2, out=str(tmp_path / "connect"), precision="fp32"))
    with np.load(tmp_path / "connect" / "sample.npz") as z:
        np.testing.assert_array_equal(z["frames"][:2], frames[-2:])
        np.testing.assert_array_equal(z["frames"][-2:], frames[:2])


def test_unknown_prompt_words_are_reported(tiny_world, tmp_path):
    info = run(SampleConfig(checkpoint=str(tiny_world), mode="t2v", prompt="two bouncy balls and a purple dragon",
                            frames=2, steps=1, out=str(tmp_path), precision="fp32"))
    assert "dragon" in info["unknown_words"]


# -- prompt expansion ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, scene, check",
    [
        ("three bouncy balls, low gravity", "bouncing_balls",
         lambda s: len([o for o in s.objects if o.role == "passive"]) == 3 and s.labels["gravity"] == "low"
         and all(s.labels[f"{o.name}.restitution"] == "bouncy" for o in s.objects)),
        ("a ball hits a fragile pane", "shatter", lambda s: s.labels["pane.strength"] == "fragile"),
        ("a ball hits a sturdy pane", "shatter", lambda s: s.labels["pane.strength"] == "sturdy"),
        ("a red ball and a blue box on a slippery floor", "push",
         lambda s: [(o.colour, o.shape) for o in s.objects if o.role == "passive"] == [("red", "sphere"), ("blue", "box")]
         and s.labels["floor"] == "slippery"),
    ],
)
def test_prompt_to_spec_to_caption_round_trip(prompt, scene, check):
    from worldsim.sim.captions import parse
    from worldsim.sim.prompts import expand_prompt

    e = expand_prompt(prompt, seed=0)
    assert e.spec.scene == scene and e.unknown == []
    assert check(e.spec), e.spec
    back = parse(e.caption)  # the detailed caption says everything the prompt said, and more
    assert back.scene == scene and back.unknown == []
    said = [(o.colour, o.noun) for o in e.description.objects if o.colour]
    assert all(any(b.colour == c and b.noun == n for b in back.objects) for c, n in said)
    assert expand_prompt(prompt, seed=0).caption == e.caption  # the seed fixes what the prompt leaves open


def test_prompts_that_ask_for_the_impossible_are_refused():
    from worldsim.sim.prompts import expand_prompt
    from worldsim.sim.scenes import ConfigError

    with pytest.raises(ValueError, match="empty"):
        expand_prompt("   ")
    with pytest.raises(ConfigError, match="gravity"):
        expand_prompt("a ball hits a pane, zero gravity")
    with pytest.raises(ConfigError, match="own colour"):
        expand_prompt("two red balls")
    with pytest.raises(ConfigError, match="only balls"):
        expand_prompt("a red box", scene="bouncing_balls")
    with pytest.raises(ConfigError, match="no floor friction"):
        expand_prompt("a ball on a slippery floor", scene="occlusion")


# -- bad input ------------------------------------------------------------------------------------
def test_bad_requests_get_clear_errors(sampler, tiny_world, tmp_path):
    with pytest.raises(SampleError, match=r"8x8 blocks.*nearest valid: 24x24, 32x32"):
        sampler.generate("t2v", "a ball", frames=4, resolution=(30, 30))
    with pytest.raises(SampleError, match="needs 2 inputs"):
        sampler.generate("connect", "a ball", frames=6, inputs=[_clip(3, 32, 32, 0)])
    with pytest.raises(SampleError, match="needs 1 input"):
        sampler.generate("i2v", "a ball", frames=4)
    with pytest.raises(SampleError, match="needs a prompt"):
        sampler.generate("t2v", "  ", frames=4)
    with pytest.raises(SampleError, match="unknown mode"):
        sampler.generate("v2v", "a ball", frames=4)
    with pytest.raises(SampleError, match="no input file"):
        run(SampleConfig(checkpoint=str(tiny_world), mode="i2v", prompt="a ball", input=str(tmp_path / "missing.png"), out=str(tmp_path)))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SampleError, match="not a readable"):
        run(SampleConfig(checkpoint=str(tiny_world), mode="i2v", prompt="a ball", input=str(tmp_path / "broken.png"), out=str(tmp_path)))


# -- any size: buckets ---------------------------------------------------------------------------------
def test_training_in_buckets_mixes_sizes_and_lengths(tiny_data, tmp_path):
    """Two data folders of different sizes, two buckets: every batch is one bucket's
    size and length, both buckets are drawn, and a DiT trains on them."""
    from worldsim.data.dataset import ClipDataset
    from worldsim.data.generation import StreamConfig, generate_stream
    from worldsim.sim.engines import EngineConfig
    from worldsim.sim.scenes import scene_config
    from worldsim.training.loop import Dist, OptimConfig, StepBatches, TrainConfig, train

    wide = tmp_path / "wide"
    generate_stream(StreamConfig(scene=scene_config("bouncing_balls"), engine=EngineConfig("mujoco"), episodes=3, frames=10,
                                 resolution=(24, 40), split="train"), wide, progress=False)
    buckets = [{"resolution": [32, 32], "frames": 4}, {"resolution": [24, 40], "frames": 6, "weight": 2}]
    data = ClipDataset([str(tiny_data), str(wide)], clip_frames=4, mixed=True)
    assert data.resolutions == [(24, 40), (32, 32)]
    seen = set()
    for items in StepBatches(data.episodes, 2, seed=0, start_step=0, max_steps=12, dist=Dist(), buckets=buckets):
        clips = [data[item] for item in items]
        shapes = {tuple(c["frames"].shape) for c in clips}
        assert len(shapes) == 1
        seen |= shapes
    assert seen == {(4, 3, 32, 32), (6, 3, 24, 40)}

    out = tmp_path / "run"
    cfg = TrainConfig(
        stage="dit", data=[str(tiny_data), str(wide)], out=str(out), max_steps=3, batch_size=2, clip_frames=4, num_workers=0,
        checkpoint_every=3, sample_every=1000, buckets=buckets, optim=OptimConfig(lr=1e-3, warmup_steps=1),
        stage_options={"model": {"dim": 32, "depth": 1, "heads": 2, "patch": [1, 8, 8]}, "text": {"dim": 16, "depth": 1, "heads": 2},
                       "autoencoder": "identity"},
    )
    result = train(cfg)
    assert np.isfinite(result["logs"]["loss"])
    with pytest.raises(Exception, match="no training episode is 48x64"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "run2"), "buckets": [{"resolution": [48, 64], "frames": 4}]}))


def test_an_autoencoder_trains_in_buckets_on_episodes_shorter_than_its_clips(tmp_path):
    """A bucketed autoencoder run takes episodes shorter than clip_frames; fitting its
    latent statistics at a checkpoint then reads what they have, not clip_frames."""
    import yaml

    from worldsim.config import config_dir
    from worldsim.data.generation import StreamConfig, generate_stream
    from worldsim.sim.engines import EngineConfig
    from worldsim.sim.scenes import scene_config
    from worldsim.training.loop import OptimConfig, TrainConfig, train

    short = tmp_path / "short"
    generate_stream(StreamConfig(scene=scene_config("bouncing_balls"), engine=EngineConfig("mujoco"), episodes=3, frames=6,
                                 resolution=(32, 32), split="train"), short, progress=False)
    ae = yaml.safe_load((Path(config_dir()) / "ae" / "tiny.yaml").read_text())
    cfg = TrainConfig(stage="autoencoder", data=str(short), out=str(tmp_path / "run"), max_steps=2, batch_size=2, clip_frames=8,
                      num_workers=0, checkpoint_every=2, sample_every=1000, buckets=[{"resolution": [32, 32], "frames": 4}],
                      optim=OptimConfig(lr=1e-3, warmup_steps=1), stage_options={"ae": ae})
    train(cfg)
    assert load_checkpoint(tmp_path / "run")["step"] == 2
