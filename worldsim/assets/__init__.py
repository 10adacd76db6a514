"""Files shipped inside the package: the reference model (``reference.safetensors``,
see docs/MODEL_CARD.md), used by LearnedWorld-v0, ``python -m worldsim.compare``,
``python -m worldsim.sample`` and ``python -m worldsim.demo`` when no checkpoint is
given."""

from __future__ import annotations

from importlib.resources import files

REFERENCE = "reference.safetensors"


def reference_checkpoint() -> str | None:
    """The path of the bundled reference model, or None if this install has none."""
    path = files("worldsim.assets") / REFERENCE
    return str(path) if path.is_file() else None
