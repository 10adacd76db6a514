import dataclasses

import numpy as np
import pytest

from worldsim.sim.scenes import SPLITS, ConfigError, episode_seed, parse_resolution, scene_config
from worldsim.sim.spec import ObjectSpec, SceneSpec, SpecError


def sample(seed, **kw):
    cfg = scene_config("bouncing_balls", **kw)
    return cfg.sample(np.random.default_rng(seed), num_frames=8, resolution=(64, 64))


def test_sampling_is_deterministic_per_seed():
    assert sample(3) == sample(3)
    assert sample(3).to_json() == sample(3).to_json()
    assert sample(3) != sample(4)


def test_spec_round_trips_through_json():
    spec = sample(5)
    assert SceneSpec.from_dict(spec.to_dict()) == spec


def test_sampled_specs_are_valid_scenes():
    for seed in range(30):
        spec = sample(seed)
        assert 1 <= len(spec.objects) <= 3
        colours = [o.colour for o in spec.objects]
        assert len(set(colours)) == len(colours)
        # balls inside the box and apart
        for i, a in enumerate(spec.objects):
            for b in spec.objects[i + 1 :]:
                assert np.hypot(a.position[0] - b.position[0], a.position[1] - b.position[1]) > a.radius + b.radius
        assert spec.labels["gravity"] in ("zero", "low", "normal", "high")
        for o in spec.objects:
            assert spec.labels[f"{o.name}.restitution"] in ("dead", "bouncy", "very bouncy")


def test_episode_seeds_depend_on_split_not_on_engine_and_are_disjoint():
    train = {episode_seed(0, "bouncing_balls", "train", i) for i in range(2000)}
    test = {episode_seed(0, "bouncing_balls", "test", i) for i in range(2000)}
    assert len(train) == 2000 and not train & test
    assert episode_seed(0, "bouncing_balls", "train", 7) == episode_seed(0, "bouncing_balls", "train", 7)
    assert episode_seed(1, "bouncing_balls", "train", 7) != episode_seed(0, "bouncing_balls", "train", 7)
    with pytest.raises(ConfigError, match="split"):
        episode_seed(0, "bouncing_balls", "validation", 0)
    assert set(SPLITS) == {"train", "test", "ood"}


def test_ood_split_draws_from_held_out_ranges():
    cfg = scene_config("bouncing_balls")
    for seed in range(10):
        spec = cfg.sample(np.random.default_rng(seed), num_frames=4, resolution=(64, 64), split="ood")
        assert len(spec.objects) >= cfg.ood["num_balls"][0]
        for o in spec.objects:
            assert np.hypot(*o.velocity) >= cfg.ood["speed"][0] - 1e-9


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"radius": [0.1, 1.5]}, "scene.radius"),
        ({"num_balls": [-1, 2]}, "scene.num_balls"),
        ({"num_balls": [2, 1]}, "scene.num_balls"),
        ({"num_balls": [1, 40], "ood": {}}, "scene.num_balls"),
        ({"restitution": {"dead": [0.1, 0.5], "bouncy": [0.4, 0.8]}}, "scene.restitution"),
        ({"ood": {"num_balls": [2, 5]}}, "scene.ood.num_balls"),
        ({"ood": {"gravity": {"zero": [0, 0]}}}, "scene.ood"),
        ({"colours": ["red", "chartreuse"]}, "scene.colours"),
    ],
)
def test_impossible_parameters_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cfg = scene_config("bouncing_balls", **overrides)
        cfg.validate(resolution=(64, 64), num_frames=8)


def test_zero_frames_and_bad_resolution_are_refused():
    cfg = scene_config("bouncing_balls")
    with pytest.raises(ConfigError, match="frames"):
        cfg.validate(resolution=(64, 64), num_frames=0)
    with pytest.raises(ConfigError, match="resolution"):
        parse_resolution("64by64")
    assert parse_resolution(64) == (64, 64)
    assert parse_resolution("48x64") == (48, 64)


def test_unknown_scene_lists_valid_ones():
    with pytest.raises(ConfigError, match="bouncing_balls"):
        scene_config("juggling")


def test_spec_validation():
    spec = sample(0)
    ball = spec.objects[0]
    with pytest.raises(SpecError, match="does not fit"):
        dataclasses.replace(spec, objects=(dataclasses.replace(ball, position=(0.01, 1.0)),))
    with pytest.raises(SpecError, match="own colour"):
        dataclasses.replace(spec, objects=(ball, dataclasses.replace(ball, name="other")))
    with pytest.raises(ValueError, match="colour"):
        ObjectSpec(name="x", shape="sphere", size=(0.1, 0.1), colour="mauve", mass=1, restitution=0.5, friction=0.1, position=(1, 1))
    with pytest.raises(SpecError, match="restitution"):
        dataclasses.replace(ball, restitution=1.5)
