import json
import zipfile

import numpy as np
import pytest

from worldsim.data.episode import ARRAY_KEYS, EpisodeError, load_episode, save_episode


def arrays(T=5, N=2, H=16, W=24, seed=0):
    r = np.random.default_rng(seed)
    return {
        "frames": r.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
        "segmentation": r.integers(0, N + 1, (T, H, W), dtype=np.uint8),
        "actions": r.standard_normal((T, 2)).astype(np.float32),
        "positions": r.standard_normal((T, N, 2)).astype(np.float32),
        "velocities": r.standard_normal((T, N, 2)).astype(np.float32),
        "angles": r.standard_normal((T, N)).astype(np.float32),
        "visible_pixels": r.integers(0, 100, (T, N), dtype=np.int32),
    }


def test_round_trip(tmp_path):
    a = arrays()
    meta = {"id": "x", "events": [{"type": "wall", "frame": 2}]}
    save_episode(tmp_path / "e.npz", a, meta)
    b = load_episode(tmp_path / "e.npz")
    for k in ARRAY_KEYS:
        assert b[k].dtype == a[k].dtype and np.array_equal(a[k], b[k]), k
    assert b["meta"] == meta
    light = load_episode(tmp_path / "e.npz", frames=False)
    assert "frames" not in light and np.array_equal(light["positions"], a["positions"])
    # plain numpy reads it too
    with np.load(tmp_path / "e.npz") as z:
        assert np.array_equal(z["frames"], a["frames"])


def test_same_episode_same_bytes(tmp_path):
    save_episode(tmp_path / "a.npz", arrays(), {"id": "x"})
    save_episode(tmp_path / "b.npz", arrays(), {"id": "x"})
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_truncated_and_garbage_files_raise_clear_errors(tmp_path):
    save_episode(tmp_path / "e.npz", arrays(), {"id": "x"})
    data = (tmp_path / "e.npz").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(EpisodeError, match="corrupt or truncated"):
            load_episode(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all" * 100)
    with pytest.raises(EpisodeError, match="junk.npz"):
        load_episode(tmp_path / "junk.npz")
    with pytest.raises(EpisodeError, match="no such episode"):
        load_episode(tmp_path / "missing.npz")


def test_flipped_bytes_inside_a_member_are_detected(tmp_path):
    save_episode(tmp_path / "e.npz", arrays(), {"id": "x"})
    data = bytearray((tmp_path / "e.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF  # zip CRC or deflate stream breaks
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(EpisodeError):
        load_episode(tmp_path / "bad.npz")


def test_missing_arrays_wrong_dtypes_and_shapes(tmp_path):
    a = arrays()
    np.savez(tmp_path / "partial.npz", frames=a["frames"], meta=np.frombuffer(json.dumps({}).encode(), np.uint8))
    with pytest.raises(EpisodeError, match="missing arrays"):
        load_episode(tmp_path / "partial.npz")
    bad = dict(a, positions=a["positions"].astype(np.float64))
    with pytest.raises(EpisodeError, match="positions must be float32"):
        save_episode(tmp_path / "x.npz", bad, {})
    bad = dict(a, velocities=a["velocities"][:, :1])
    with pytest.raises(EpisodeError, match=r"velocities has shape \(5, 1, 2\), expected \(T, N, 2\)"):
        save_episode(tmp_path / "x.npz", bad, {})
    bad = dict(a, segmentation=a["segmentation"][:, :8])
    with pytest.raises(EpisodeError, match="segmentation"):
        save_episode(tmp_path / "x.npz", bad, {})
    assert not (tmp_path / "x.npz").exists()


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OSError, match="disk full"):
        save_episode(tmp_path / "e.npz", arrays(), {})
    assert list(tmp_path.iterdir()) == []
