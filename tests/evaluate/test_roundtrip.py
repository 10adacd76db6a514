"""The autoencoder round-trip gate: positions and objects must survive encode-decode
before dynamics are trained in a latent space (docs/RECIPE.md)."""

from worldsim.evaluate.autoencoder import evaluate_autoencoder
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig, load_autoencoder


def test_pixel_space_passes_the_round_trip_exactly(tiny_data):
    r = evaluate_autoencoder(load_autoencoder("identity"), tiny_data, episodes=2)
    assert r["position_error_px"] == 0.0 and r["objects_lost_fraction"] == 0.0
    assert r["round_trip"]["passes"] and r["round_trip"]["scenes"] == {"bouncing_balls": True}


def test_a_lossy_autoencoder_fails_it(tiny_data):
    ae = Autoencoder(AutoencoderConfig(spatial_factor=4, channels=[8, 8, 8], latent_channels=4)).eval()  # untrained
    r = evaluate_autoencoder(ae, tiny_data, episodes=2)
    assert not r["round_trip"]["passes"]
    assert r["scenes"]["bouncing_balls"]["objects_lost_with_12px_shown"] > 0 or r["position_error_px"] > 0.3
