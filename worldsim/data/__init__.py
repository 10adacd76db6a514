"""Episodes on disk (npz + manifest) and the clip dataset that reads them."""

from worldsim.data.episode import EpisodeError, load_episode, save_episode
from worldsim.data.manifest import ManifestError, read_manifest

__all__ = ["EpisodeError", "ManifestError", "load_episode", "read_manifest", "save_episode"]
