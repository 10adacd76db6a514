"""Gymnasium registration. ``import worldsim`` runs this (Gymnasium 1.x has no
plugin autoload); ``gymnasium.make("worldsim:LearnedWorld-v0")`` imports worldsim
first, so both forms work."""

from gymnasium.envs.registration import register, registry

MAX_EPISODE_STEPS = 200

if "PhysicsWorld-v0" not in registry:
    register(id="PhysicsWorld-v0", entry_point="worldsim_envs.physics_world:PhysicsWorldEnv", max_episode_steps=MAX_EPISODE_STEPS)
if "LearnedWorld-v0" not in registry:
    register(
        id="LearnedWorld-v0",
        entry_point="worldsim_envs.learned_world:LearnedWorldEnv",
        vector_entry_point="worldsim_envs.learned_world:LearnedWorldVectorEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )
