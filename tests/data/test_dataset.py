import pytest
import torch

from worldsim.data.dataset import ClipDataset, DataError
from worldsim.data.episode import load_episode


def test_clips_have_the_documented_shapes_and_ranges(tiny_data):
    ds = ClipDataset(tiny_data, clip_frames=8)
    assert len(ds) == 6
    item = ds[0]
    assert item["frames"].shape == (8, 3, 32, 32) and item["frames"].dtype == torch.float32
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1
    assert item["segmentation"].shape == (8, 32, 32)
    assert item["actions"].shape == (8, 2)
    assert isinstance(item["caption"], str) and isinstance(item["caption_detailed"], str)
    ep = load_episode(tiny_data / ds.episodes[0]["path"])
    s = item["start"]
    want = torch.from_numpy(ep["frames"][s : s + 8]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(item["frames"], want)


def test_dataloader_with_workers_is_seeded(tiny_data):
    ds = ClipDataset(tiny_data, clip_frames=6, windows_per_episode=2)

    def starts(seed):
        dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [(tuple(b["episode"]), b["start"].tolist()) for b in dl]

    a, b = starts(0), starts(0)
    assert a == b and len(a) == 3
    assert starts(1) != a
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch["frames"].shape == (4, 6, 3, 32, 32)


def test_filters_and_clear_errors(tiny_data, tmp_path):
    assert len(ClipDataset(tiny_data, clip_frames=4, split="test")) == 2
    assert ClipDataset(tiny_data, clip_frames=4, split="test", window="first")[0]["start"] == 0
    with pytest.raises(DataError, match="no episode .* matches"):
        ClipDataset(tiny_data, clip_frames=40)
    with pytest.raises(DataError, match="holds no episodes"):
        ClipDataset(tmp_path, clip_frames=4)
    with pytest.raises(DataError, match="does not exist"):
        ClipDataset(tmp_path / "nope", clip_frames=4)
    with pytest.raises(DataError, match="engines=\\['mujoco'\\]"):
        ClipDataset(tiny_data, clip_frames=4, engines=["mujoco"])


def test_a_latent_cache_that_holds_other_episodes_is_refused_by_name(tiny_data, tmp_path):
    """The cache's size check names the file and the fix (it once referenced an undefined name)."""
    import numpy as np
    import pytest
    import torch

    from worldsim.data.dataset import ClipDataset
    from worldsim.data.latents import build_latent_cache
    from worldsim.models.autoencoder import load_autoencoder

    clips = ClipDataset(str(tiny_data), clip_frames=4)
    ae = load_autoencoder("identity")
    build_latent_cache(clips, ae, tmp_path / "cache", device=torch.device("cpu"), precision="fp32", progress=False)
    z = tmp_path / "cache" / "32x32.npy"
    np.save(z, np.load(z)[:2])  # a cache cut to two episodes, its index still claiming all
    with pytest.raises(ValueError, match=r"32x32.npy holds 2 episodes, expected 6; delete .* to rebuild it"):
        build_latent_cache(clips, ae, tmp_path / "cache", device=torch.device("cpu"), precision="fp32", progress=False)
