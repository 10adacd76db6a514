"""Captions of episodes, generated from the spec and the events.

``caption`` is short ("two balls bounce"); ``caption_detailed`` names what can be
seen (colours, counts, shapes) and what cannot (mass, bounciness, gravity as the
words the sampler drew them as), then the salient events in order.
"""

from __future__ import annotations

from typing import Any

from worldsim.sim.spec import SceneSpec

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def number_word(n: int) -> str:
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"a {noun}"
    return f"{number_word(n)} {noun}s"


def caption(spec: SceneSpec, events: list[dict[str, Any]]) -> str:
    """Short caption: what kind of scene, how many objects."""
    balls = sum(o.shape == "sphere" and o.role != "agent" for o in spec.objects)
    verb = "bounces" if balls == 1 else "bounce"
    return f"{_count(balls, 'ball')} {verb}"


def caption_detailed(spec: SceneSpec, events: list[dict[str, Any]]) -> str:
    """Detailed caption: every object with its visible and hidden properties, the
    gravity, and the events in the order they happen."""
    names = {o.name: f"the {o.colour} ball" for o in spec.objects}
    parts = []
    descs = []
    for o in spec.objects:
        words = [spec.labels.get(f"{o.name}.mass"), spec.labels.get(f"{o.name}.restitution")]
        adj = " ".join(w for w in words if w)
        descs.append(f"a {adj + ' ' if adj else ''}{o.colour} ball")
    parts.append(_join(descs).capitalize() + f" {'bounces' if len(descs) == 1 else 'bounce'} in a box")
    g = spec.labels.get("gravity")
    if g:
        parts[-1] += " with no gravity" if g == "zero" else f" under {g} gravity"
    parts[-1] += "."
    said = []
    for e in events:
        if e["type"] == "wall":
            said.append(f"{names[e['object']]} hits the {_wall(e['wall'])}")
        elif e["type"] == "collision":
            a, b = e["objects"]
            said.append(f"{names[a]} hits {names[b]}")
    if said:
        parts.append(_sentence(_dedupe(said)[:6]))
    return " ".join(parts)


def _wall(edge: str) -> str:
    return {"bottom": "floor", "top": "ceiling", "left": "left wall", "right": "right wall"}[edge]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(clauses: list[str]) -> str:
    text = clauses[0]
    for c in clauses[1:]:
        text += f", then {c}"
    return text[0].upper() + text[1:] + "."


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for it in items:
        if not out or out[-1] != it:
            out.append(it)
    return out
