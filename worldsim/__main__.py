"""``python -m worldsim`` lists the entry points (each also a ``worldsim-...`` command)."""

ENTRY_POINTS = {
    "generate": "make episodes: scenes simulated with full ground truth (scene=... engine=... episodes=N out=DIR)",
    "train": "train the autoencoder or the DiT, or a named experiment (experiment=NAME [eval=true]); -m for sweeps",
    "compare": "learned rollouts against the physics, with baselines (checkpoint=RUN scene=S out=DIR)",
    "sample": "Sora-style sampling: t2v, i2v, extend, extend_backward, connect, loop, edit (mode=... prompt=...)",
    "adherence": "does the model do what the prompt says (checkpoint=RUN out=DIR)",
    "demo": "the bundled learned world beside the physics, every scene, in about a minute",
    "bench": "speed and fidelity figures: generate | agreement | autoencoder | train | step | fidelity",
    "export": "a trained run as one .safetensors file (RUN OUT.safetensors)",
    "report_sweep": "a sweep's runs as one table and plot (multirun/NAME)",
    "play": "drive the learned world live beside its physics twin (scene=push; needs pygame)",
}


def main() -> None:
    print("worldsim entry points (python -m worldsim.NAME, or the command worldsim-NAME):")
    for name, what in ENTRY_POINTS.items():
        print(f"  {name:<13} {what}")


if __name__ == "__main__":
    main()
