"""worldsim's Gymnasium environments (installed as the package ``worldsim_envs``).

``PhysicsWorld-v0`` (ground truth, PyBullet or MuJoCo) and ``LearnedWorld-v0`` (the
learned simulator) share their spaces; ``import worldsim`` registers both.
"""
