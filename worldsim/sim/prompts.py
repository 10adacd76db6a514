"""Prompt expansion: a short prompt becomes a scene spec and the detailed caption the
model was trained on (Sora's recaptioning, made exact by the caption grammar).

"three bouncy balls, low gravity" is parsed into words (:func:`worldsim.sim.captions.parse`);
a spec is drawn from the scene's ranges with the seed, with everything the prompt says
imposed on it (counts, colours, shapes, sizes, masses, bounciness, a pane's strength,
the floor, gravity), and rendered back as the detailed caption of that spec, without
events (they are what the model will generate). Words the grammar does not know are
returned, never dropped silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from worldsim.sim import palette
from worldsim.sim.captions import ADJECTIVES, COLOURS, WORD_NUMBERS, Description, caption_detailed, parse, tokenize
from worldsim.sim.scenes import ConfigError, scene_config
from worldsim.sim.scenes.base import place_discs, uniform
from worldsim.sim.spec import SceneSpec, SpecError


@dataclass
class Expanded:
    spec: SceneSpec
    caption: str  # the detailed caption, without events
    description: Description  # what the prompt said
    unknown: list[str]  # words of the prompt outside the grammar


def expand_prompt(
    prompt: str, *, seed: int = 0, scene: str | None = None, resolution: tuple[int, int] = (64, 64), num_frames: int = 32, split: str = "test"
) -> Expanded:
    """Expand a short prompt (see the module docstring). ``scene`` overrides the scene
    the prompt suggests; ConfigError if the prompt asks for the impossible (more
    objects than the scene holds, a word the scene does not use)."""
    if not prompt.strip():
        raise ValueError("the prompt is empty; describe the scene, e.g. 'two bouncy balls, low gravity'")
    _refuse_shared_colours(prompt)
    d = parse(prompt)
    name = scene or d.scene or "bouncing_balls"
    rng = np.random.default_rng(seed)
    things = [o for o in d.objects if o.noun in ("ball", "box")]
    overrides = {}
    count_key = {"bouncing_balls": "num_balls", "occlusion": "num_balls", "push": "num_objects"}.get(name)
    if count_key and things:
        overrides[count_key] = [len(things), len(things)]
        overrides["ood"] = {}
    if d.gravity and name in ("bouncing_balls", "shatter", "occlusion"):
        g = scene_config(name).gravity
        if d.gravity not in g:
            raise ConfigError(f"the {name} scene has no {d.gravity!r} gravity; it has {list(g)}")
        overrides["gravity"] = {d.gravity: g[d.gravity]}
    if any(o.noun == "box" for o in things) and name != "push":
        raise ConfigError(f"the {name} scene has only balls; boxes are in the push scene (prompt {prompt!r})")
    if d.floor and name != "push":
        raise ConfigError(f"the {name} scene has no floor friction; {d.floor!r} floors are in the push scene (prompt {prompt!r})")
    if d.floor:
        overrides["floor"] = {d.floor: scene_config(name).floor[d.floor]}  # type: ignore[attr-defined]
    if d.screens and name == "occlusion":
        if len(d.screens) > len(palette.OCCLUDER_COLOURS) or len(set(d.screens)) < len(d.screens):
            raise ConfigError(f"the occlusion scene has at most one screen of each of {list(palette.OCCLUDER_COLOURS)}")
        overrides["num_screens"] = [len(d.screens), len(d.screens)]
    pane = next((o for o in d.objects if o.noun == "pane"), None)
    if pane is not None and pane.strength and name == "shatter":
        overrides["fragile_probability"] = 1.0 if pane.strength == "fragile" else 0.0
    try:
        cfg = scene_config(name, **overrides)
    except ConfigError as e:
        raise ConfigError(f"the prompt {prompt!r} does not fit the {name} scene: {e}") from e
    spec = cfg.sample(rng, num_frames=num_frames, resolution=resolution, split=split)
    spec = _impose(spec, things, cfg, rng)
    if d.screens and name == "occlusion":  # the screens' colours as said, in order
        screens = [f for f in spec.fixtures if f.kind == "occluder"]
        recoloured = {f.name: dataclasses.replace(f, colour=c) for f, c in zip(screens, d.screens)}
        spec = dataclasses.replace(spec, fixtures=tuple(recoloured.get(f.name, f) for f in spec.fixtures))
    return Expanded(spec, caption_detailed(spec, []), d, d.unknown)


def _refuse_shared_colours(prompt: str) -> None:
    """"two red balls" cannot be drawn: every object has its own colour."""
    toks = tokenize(prompt)
    for i, t in enumerate(toks):
        n = WORD_NUMBERS.get(t, int(t) if t.isdigit() else 1)
        if n < 2:
            continue
        j = i + 1
        while j < len(toks) and toks[j] in ADJECTIVES:
            j += 1
        if j + 1 < len(toks) and toks[j] in COLOURS and toks[j + 1] in ("balls", "boxes"):
            raise ConfigError(
                f"{' '.join(toks[i : j + 2])!r}: every object has its own colour; name one colour per object "
                f"(e.g. 'a red ball and a blue ball') or none ('{t} {toks[j + 1]}')"
            )


def _impose(spec: SceneSpec, words: list, cfg: object, rng: np.random.Generator) -> SceneSpec:
    """The spec with each passive object's colour, shape, size, mass and bounciness as
    the prompt said (in order), re-placed if sizes changed."""
    passive = [i for i, o in enumerate(spec.objects) if o.role == "passive" and o.shape != "pane"]
    objects = list(spec.objects)
    labels = dict(spec.labels)
    taken = {o.colour for o in objects}
    sizes = getattr(cfg, "radius", None) if isinstance(getattr(cfg, "radius", None), dict) else getattr(cfg, "size", None)
    moved = False
    for i, w in zip(passive, words):
        o = objects[i]
        changes: dict = {}
        if w.colour and w.colour != o.colour:
            if w.colour not in palette.OBJECT_COLOURS:
                raise ConfigError(f"{w.colour!r} is not an object colour; use one of {list(palette.OBJECT_COLOURS)}")
            if w.colour in taken:  # swap with the object that has it
                j = next(k for k, x in enumerate(objects) if x.colour == w.colour)
                objects[j] = dataclasses.replace(objects[j], colour=o.colour)
            changes["colour"] = w.colour
            taken.add(w.colour)
        if w.noun in ("ball", "box") and spec.scene == "push":
            shape = "box" if w.noun == "box" else "sphere"
            if shape != o.shape:
                changes["shape"] = shape
                moved = True
        if w.size and isinstance(sizes, dict):
            if w.size not in sizes:
                raise ConfigError(f"the {spec.scene} scene has no {w.size!r} size; it has {list(sizes)}")
            r = uniform(rng, sizes[w.size])
            changes["size"] = (r, r)
            labels[f"{o.name}.size"] = w.size
            moved = True
        for attr, key in (("mass", "mass"), ("restitution", "restitution")):
            word = getattr(w, attr)
            table = getattr(cfg, key, None)
            if word and isinstance(table, dict):
                if word not in table:
                    raise ConfigError(f"the {spec.scene} scene has no {word!r} {key}; it has {list(table)}")
                changes[key] = uniform(rng, table[word])
                labels[f"{o.name}.{key}"] = word
        if changes:
            objects[i] = dataclasses.replace(o, **changes)
    if moved and spec.scene in ("bouncing_balls", "push"):  # sizes or shapes changed: place again, apart
        # (occlusion and shatter keep their positions: they are aimed at screens and panes)
        radii = [o.radius for o in objects]
        try:
            centres = place_discs(rng, radii, (spec.camera.box_width, spec.camera.box_height))
        except SpecError as e:
            raise ConfigError(f"the objects the prompt asks for do not fit in the box: {e}") from e
        objects = [dataclasses.replace(o, position=c) for o, c in zip(objects, centres)]
    if spec.scene == "push":  # names follow shapes (box0, ball1)
        renamed = {}
        for k, o in enumerate(objects):
            if o.role == "passive":
                new = f"{'box' if o.shape == 'box' else 'ball'}{k}"
                renamed[o.name] = new
                objects[k] = dataclasses.replace(o, name=new)
        labels = {(renamed.get(k.split(".")[0], k.split(".")[0]) + "." + k.split(".", 1)[1]) if "." in k else k: v for k, v in labels.items()}
        if labels.get("agent.target") in renamed:
            labels["agent.target"] = renamed[labels["agent.target"]]
    try:
        return dataclasses.replace(spec, objects=tuple(objects), labels=labels)
    except SpecError as e:
        raise ConfigError(f"the prompt asks for an impossible scene: {e}") from e
