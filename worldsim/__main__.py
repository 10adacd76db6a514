"""``python -m worldsim`` lists the entry points."""

print(
    "worldsim entry points:\n"
    "  python -m worldsim.generate   make episodes (Hydra: scene=... engine=... out=...)\n"
    "  python -m worldsim.bench      measure speed (generate)\n"
)
