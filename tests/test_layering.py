"""The import graph keeps the one-way house of ../shared/DESIGN.md: data flows one
way, each stage knows nothing of the stages after it, nothing imports in a circle, and
imports sit at the top of modules (README "Layout" names the layers)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a module may import its own layer or lower ones, never a later one.
LAYERS = [
    ("foundation", ["worldsim", "worldsim.registration", "worldsim.assets", "worldsim.atomic", "worldsim.checkpoint", "worldsim.cli", "worldsim.config",
                    "worldsim.frames", "worldsim.pixel_metrics", "worldsim.runtime", "worldsim.video"]),
    ("physics", ["worldsim.sim"]),
    ("data", ["worldsim.data"]),
    ("models", ["worldsim.models", "worldsim.diffusion"]),
    ("training", ["worldsim.training"]),
    ("using a trained world", ["worldsim.simulator", "worldsim.sampler"]),
    ("environments", ["worldsim_envs"]),
    ("evaluation", ["worldsim.evaluate"]),
    ("entry points", ["worldsim.__main__", "worldsim.generate", "worldsim.train", "worldsim.compare", "worldsim.sample", "worldsim.adherence",
                      "worldsim.demo", "worldsim.bench", "worldsim.export", "worldsim.report_sweep", "worldsim.play"]),
]
# Imports that may sit inside a function, and why.
DEFERRED = {
    ("worldsim.sim.engines", "worldsim.sim.pybullet"): "each engine backend is imported when chosen (PyBullet has no wheel for some Pythons)",
    ("worldsim.sim.engines", "worldsim.sim.mujoco"): "each engine backend is imported when chosen",
}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in (("worldsim", "worldsim"), ("envs", "worldsim_envs")):
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *f.relative_to(ROOT / folder).with_suffix("").parts]
            found[".".join(p for p in parts if p != "__init__")] = f
    return found


MODULES = modules()


def layer(name: str) -> int:
    best, depth = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > depth:
                best, depth = i, len(p)
    assert best is not None, f"{name} is in no layer of tests/test_layering.py: add it to LAYERS"
    return best


def internal(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> list[tuple[str, str, bool, list[str]]]:
    """(importer, imported module, at module level, names) for every internal import."""
    out = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body} | {id(n) for b in tree.body if isinstance(b, (ast.If, ast.Try)) for n in ast.walk(b)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [a.name for a in node.names]
                targets = [(f"{node.module}.{n}" if internal(f"{node.module}.{n}") == f"{node.module}.{n}" else node.module, names) for n in names]
            else:
                continue
            for target, names in targets:
                t = internal(target)
                if t and t != mod:
                    out.append((mod, t, id(node) in top, names))
    return out


IMPORTS = imports()


def test_every_module_has_a_layer():
    for mod in MODULES:
        layer(mod)


def test_no_import_runs_backward_against_the_data_flow():
    backward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})" for a, b, _, _ in IMPORTS if layer(b) > layer(a)]
    assert not backward, "\n".join(backward)


def test_the_core_package_never_imports_the_environments():
    assert not [(a, b) for a, b, _, _ in IMPORTS if a.startswith("worldsim.") and b.startswith("worldsim_envs")]


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in IMPORTS:
        graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_sit_at_the_top_of_modules():
    hidden = [f"{a} imports {b} inside a function" for a, b, top, _ in IMPORTS if not top and (a, b) not in DEFERRED]
    assert not hidden, "\n".join(hidden)


def test_no_private_name_is_imported_across_modules():
    private = [f"{a} imports {n} from {b}" for a, b, _, names in IMPORTS for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, "\n".join(private)
