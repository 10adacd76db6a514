"""worldsim: a physics-grounded world simulator.

PyBullet and MuJoCo scenes rendered to video with complete ground truth, a
Sora-style video model trained on them, and every learned rollout measured against
the physics. See README.md.
"""

from __future__ import annotations

import logging as _logging
import os as _os

# Headless rendering by default: MuJoCo reads this when it is first imported.
_os.environ.setdefault("MUJOCO_GL", "egl")
# PyOpenGL (under MuJoCo) logs at INFO that an optional accelerator is missing.
_logging.getLogger("OpenGL").setLevel(_logging.WARNING)

__version__ = "0.1.0"

from worldsim import registration  # noqa: E402,F401  (registers the Gymnasium ids)
