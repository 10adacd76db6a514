"""Both engines: build, step, render; ground truth consistent with the pixels; the
same spec behaves the same in both (tolerances documented in each test)."""

import numpy as np
import pytest

from worldsim.sim import palette
from worldsim.sim.engines import make_engine
from worldsim.sim.scenes import scene_config
from worldsim.sim.simulate import simulate

ENGINES = ("pybullet", "mujoco")


def specs(n, seed0=0, **kw):
    cfg = scene_config("bouncing_balls", **kw)
    return [cfg.sample(np.random.default_rng(seed0 + i), num_frames=16, resolution=(64, 64)) for i in range(n)]


@pytest.mark.parametrize("name", ENGINES)
def test_engine_builds_steps_and_renders(engines, name):
    spec = specs(1, seed0=11)[0]
    arrays, events = simulate(spec, engines[name])
    T, N = spec.num_frames, len(spec.objects)
    assert arrays["frames"].shape == (T, 64, 64, 3) and arrays["frames"].dtype == np.uint8
    assert arrays["segmentation"].shape == (T, 64, 64) and arrays["segmentation"].dtype == np.uint8
    assert arrays["positions"].shape == (T, N, 2) and arrays["velocities"].shape == (T, N, 2)
    assert set(np.unique(arrays["segmentation"])) <= set(range(N + 1))
    # flat colours: every pixel of object i has its palette colour, the rest is background
    for i, o in enumerate(spec.objects):
        px = arrays["frames"][arrays["segmentation"] == i + 1]
        assert len(px) > 0
        assert np.abs(px.astype(int) - palette.rgb(o.colour)).max() <= 1, f"{name}: {o.colour} is not flat"
    bg = arrays["frames"][arrays["segmentation"] == 0]
    assert np.all(bg == palette.BACKGROUND)
    assert np.array_equal(arrays["visible_pixels"][0], [np.sum(arrays["segmentation"][0] == i + 1) for i in range(N)])
    for e in events:
        assert e["type"] in ("wall", "collision") and 1 <= e["frame"] < T


@pytest.mark.parametrize("name", ENGINES)
def test_positions_are_the_centroids_of_the_masks(engines, name):
    """The pixel convention (pixel (c, r) centred at (c + 0.5, r + 0.5)) holds to
    within 0.1 px on average: the rasteriser's own offset is calibrated away."""
    errs = []
    for spec in specs(12, seed0=100):
        arrays, _ = simulate(spec, engines[name])
        for t in range(spec.num_frames):
            for i in range(len(spec.objects)):
                m = arrays["segmentation"][t] == i + 1
                if m.sum() > 20:
                    ys, xs = np.nonzero(m)
                    errs.append([xs.mean() + 0.5 - arrays["positions"][t, i, 0], ys.mean() + 0.5 - arrays["positions"][t, i, 1]])
    errs = np.array(errs)
    assert np.all(np.abs(errs.mean(0)) < 0.05), errs.mean(0)
    assert np.abs(errs).mean() < 0.1


@pytest.mark.parametrize("name", ENGINES)
def test_free_fall_follows_the_parabola(engines, name, ball_spec):
    """Ballistic motion in both engines is semi-implicit Euler at 240 Hz:
    x_n = x0 + v0 n dt - g dt^2 n (n + 1) / 2, to 1e-3 px. (The continuous parabola
    differs from it by g dt t / 2: 0.23 px after 0.35 s.)"""
    spec = ball_spec(v=(0.5, 1.0), pos=(0.5, 1.0), frames=8)
    arrays, events = simulate(spec, engines[name])
    assert not events
    dt = spec.physics.dt
    n = np.arange(8) * spec.physics.substeps
    u = 0.5 + 0.5 * n * dt
    v = 1.0 + 1.0 * n * dt - 9.81 * dt**2 * n * (n + 1) / 2
    ppm = spec.camera.pixels_per_metre
    want = np.stack([u * ppm, (2.0 - v) * ppm], 1)
    assert np.abs(arrays["positions"][:, 0] - want).max() < 1e-3
    want_v = np.stack([np.full(8, 0.5), -(1.0 - 9.81 * n * dt)], 1) * ppm
    assert np.abs(arrays["velocities"][:, 0] - want_v).max() < 1e-3


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("e", [0.2, 0.5, 0.9])
def test_restitution_is_the_rebound_speed_ratio(engines, name, e, ball_spec):
    """A ball dropped on the floor leaves it at e times its impact speed (within 0.03)."""
    spec = ball_spec(e=e, pos=(1.0, 1.2), frames=20)
    engine = engines[name]
    engine.reset(spec)
    before = after = None
    prev = 0.0
    for _ in range(spec.num_frames * spec.physics.substeps):
        engine._physics_step()
        vz = engine._body_states()[1][0, 1]
        if prev < -1.0 and vz > 0:
            before, after = prev, vz
            break
        prev = vz
    assert before is not None, "the ball never bounced"
    assert after / -before == pytest.approx(e, abs=0.03)


@pytest.mark.parametrize("name", ENGINES)
def test_drop_reports_the_floor_hit_at_the_right_frame(engines, name, ball_spec):
    spec = ball_spec(e=0.5, pos=(1.0, 1.5), frames=20)
    _, events = simulate(spec, engines[name])
    # falls 1.5 - 0.15 m: t = sqrt(2 h / g) = 0.525 s -> during the step into frame 11
    t_hit = np.sqrt(2 * 1.35 / 9.81)
    first = events[0]
    assert first["type"] == "wall" and first["wall"] == "bottom" and first["object"] == "ball0"
    assert first["frame"] == int(np.ceil(t_hit * spec.physics.fps))
    assert first["impulse"] == pytest.approx(1.5 * np.sqrt(2 * 9.81 * 1.35), rel=0.05)  # m (1 + e) v


def test_same_spec_moves_the_same_in_both_engines_before_first_contact(engines):
    """Documented tolerance: until the first contact of either engine, positions
    agree to 1e-3 px and velocities to 1e-2 px/s; the rendered masks overlap with
    IoU >= 0.85 (PyBullet tessellates spheres more coarsely than MuJoCo)."""
    checked = 0
    for spec in specs(16, seed0=200):
        a, ea = simulate(spec, engines["pybullet"])
        b, eb = simulate(spec, engines["mujoco"])
        first = min([e["frame"] for e in ea + eb], default=spec.num_frames)
        if first < 2:
            continue
        checked += 1
        np.testing.assert_allclose(a["positions"][:first], b["positions"][:first], atol=1e-3)
        np.testing.assert_allclose(a["velocities"][:first], b["velocities"][:first], atol=1e-2)
        for i in range(len(spec.objects)):
            ma, mb = a["segmentation"][:first] == i + 1, b["segmentation"][:first] == i + 1
            assert (ma & mb).sum() / (ma | mb).sum() >= 0.85
    assert checked >= 8


def test_pybullet_motion_stays_in_the_plane(engines):
    import pybullet as pb

    engine = engines["pybullet"]
    for spec in specs(4, seed0=300, num_balls=[3, 3]):
        engine.reset(spec)
        for _ in range(spec.num_frames):
            engine.step()
            for uid in engine._uids:
                (x, y, z), _ = pb.getBasePositionAndOrientation(uid, physicsClientId=engine._client)
                assert abs(y) < 1e-9


def test_mujoco_colour_segmentation_equals_its_segmentation_pass(engines):
    render_pass = make_engine("mujoco", segmentation="render")
    try:
        for spec in specs(4, seed0=400):
            a, _ = simulate(spec, engines["mujoco"])
            b, _ = simulate(spec, render_pass)
            assert np.array_equal(a["frames"], b["frames"])
            assert np.array_equal(a["segmentation"], b["segmentation"])
    finally:
        render_pass.close()


def test_mujoco_reused_render_context_renders_like_a_fresh_one(engines):
    spec = specs(1, seed0=500)[0]
    fresh = make_engine("mujoco")
    try:
        fresh.reset(spec)
        engines["mujoco"].reset(specs(1, seed0=501)[0])  # a different model first
        engines["mujoco"].reset(spec)
        assert all(np.array_equal(x, y) for x, y in zip(fresh.render(), engines["mujoco"].render()))
    finally:
        fresh.close()


def test_engines_refuse_bad_actions_and_names(engines, ball_spec):
    with pytest.raises(ValueError, match="pybullet, mujoco"):
        make_engine("bullet3")
    engine = engines["pybullet"]
    engine.reset(ball_spec(frames=4))
    with pytest.raises(ValueError, match="finite"):
        engine.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="2 finite numbers"):
        engine.step(np.zeros(3))
    with pytest.raises(ValueError, match="actions must have shape"):
        simulate(ball_spec(frames=4), engine, np.zeros((3, 2)))


@pytest.mark.parametrize("name", ENGINES)
def test_same_spec_same_episode(engines, name):
    spec = specs(1, seed0=600, num_balls=[3, 3])[0]
    a, ea = simulate(spec, engines[name])
    simulate(specs(1, seed0=601)[0], engines[name])  # something else in between
    b, eb = simulate(spec, engines[name])
    assert ea == eb
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_other_resolutions_and_aspect_ratios_render(engines):
    cfg = scene_config("bouncing_balls")
    for res in [(48, 64), (32, 32), (64, 96)]:
        spec = cfg.sample(np.random.default_rng(0), num_frames=3, resolution=res)
        for name in ENGINES:
            arrays, _ = simulate(spec, engines[name])
            assert arrays["frames"].shape == (3, *res, 3)
            assert arrays["visible_pixels"][0].min() > 0
