"""The caption grammar: captions from specs and events, and back.

Every episode gets a short caption ("two balls bounce") and a detailed one that
names what can be seen (colours, counts, shapes, sizes) and what cannot (mass,
bounciness, the pane's strength, the floor's roughness, gravity), all as words the
scene sampler drew them as, then the salient events in the order they happen::

    Two balls bounce in a box under low gravity. The red ball is small, heavy and
    very bouncy. The blue ball is large, light and dead. The red ball hits the
    floor, then the red ball hits the blue ball.

The grammar is one vocabulary (:data:`VOCABULARY`, the words the text encoder
knows) and one structure, :class:`Description`, which both :func:`describe`
(spec and events -> description) and :func:`parse` (text -> description) produce
and :func:`render` turns into text, so ``parse(render(d)) == d`` for every
description the scenes can make. :func:`parse` also reads looser prompts ("three
bouncy balls, low gravity") and lists the words it did not know, never dropping
them silently.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from worldsim.sim import palette
from worldsim.sim.spec import SceneSpec

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "twenty-one",
           "twenty-two", "twenty-three", "twenty-four", "twenty-five", "twenty-six", "twenty-seven", "twenty-eight",
           "twenty-nine", "thirty", "thirty-one", "thirty-two", "thirty-three", "thirty-four", "thirty-five", "thirty-six")  # fmt: skip

# Words by role. Hidden parameters first: the words the samplers draw.
SIZES = ("small", "large")
MASSES = ("light", "heavy")
RESTITUTIONS = ("dead", "bouncy", "very bouncy")
STRENGTHS = ("fragile", "sturdy")
FLOORS = ("slippery", "rough")
GRAVITIES = ("zero", "low", "normal", "high")
COLOURS = tuple(palette.OBJECT_COLOURS) + (palette.AGENT_COLOUR[0],) + tuple(palette.OCCLUDER_COLOURS)
NOUNS = ("ball", "box", "pane", "agent", "screen")
WALLS = {"bottom": "floor", "top": "ceiling", "left": "left wall", "right": "right wall"}
REGIONS = ("bottom left", "bottom", "bottom right", "left", "centre", "right", "top left", "top", "top right")
SCENES = ("bouncing_balls", "shatter", "occlusion", "push")

# Phrases the tokenizer keeps together.
_PHRASES = sorted(
    {*RESTITUTIONS, *(c for c in COLOURS if " " in c), *WALLS.values(), *REGIONS, "no gravity", "at random", "seen from above",
     "glass pane", "bounces off", "shatters into", "in a box"},
    key=lambda p: -len(p),
)  # fmt: skip
_FUNCTION_WORDS = ("a", "an", "the", "is", "are", "and", "then", "in", "under", "with", "at", "into", "on", "behind",
                   "toward", "of", "from", "by", "to", "it", "its", "gravity", "floor", "box", "pieces", "cut", "thrown",
                   "bounce", "bounces", "move", "moves", "hits", "hit", "pushes", "push", "disappears", "reappears",
                   "shatters", "bounces", "off", "glass", "seen", "above", "random", "no", "very", "left", "right",
                   "top", "bottom", "wall", "ceiling", "centre", "dark", "objects", "object", "balls", "boxes",
                   "screens", "agents", "panes", "a", "ball", "pane", "agent", "screen", "white", "among", "them")  # fmt: skip


def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set(_FUNCTION_WORDS) | set(NUMBERS)
    for group in (SIZES, MASSES, RESTITUTIONS, STRENGTHS, FLOORS, GRAVITIES, COLOURS, NOUNS, REGIONS, tuple(WALLS.values())):
        for phrase in group:
            words.update(phrase.split())
    return tuple(sorted(words))


VOCABULARY: tuple[str, ...] = _vocabulary()
"""Every word a caption can contain (lower case; punctuation is not a word)."""


@dataclass
class ObjectWords:
    """One object as words. ``name`` is the spec's name (not part of the text)."""

    noun: str  # ball | box | pane | agent
    colour: str
    size: str | None = None
    mass: str | None = None
    restitution: str | None = None
    strength: str | None = None  # panes
    pieces: int | None = None  # panes

    @property
    def label(self) -> str:
        """How sentences refer to it: 'red ball', 'pane', 'agent'."""
        return self.noun if self.noun in ("pane", "agent") else f"{self.colour} {self.noun}"


@dataclass
class Description:
    """A scene in words: what the captions say, structured."""

    scene: str
    objects: list[ObjectWords] = field(default_factory=list)
    gravity: str | None = None
    floor: str | None = None
    screens: list[str] = field(default_factory=list)  # occluder colours
    policy: str | None = None  # random | scripted
    target: str | None = None  # label of the object the scripted agent pushes
    goal: str | None = None  # region it pushes toward
    events: list[tuple[Any, ...]] = field(default_factory=list)  # (verb, subject label, object label or number)
    unknown: list[str] = field(default_factory=list)  # words parse() did not know

    def without_events(self) -> "Description":
        return Description(self.scene, self.objects, self.gravity, self.floor, self.screens, self.policy, self.target, self.goal)


# -- spec and events -> description ----------------------------------------------------------
MAX_EVENT_CLAUSES = 8


def describe(spec: SceneSpec, events: list[dict[str, Any]]) -> Description:
    """The description of an episode: its spec's words and its salient events."""
    L = spec.labels
    objects = []
    label_of = {}
    for o in spec.objects:
        if o.role == "agent":
            w = ObjectWords("agent", palette.AGENT_COLOUR[0])
        elif o.shape == "pane":
            w = ObjectWords("pane", palette.PANE_COLOUR[0], strength=L.get(f"{o.name}.strength"), pieces=o.pane.num_fragments)  # type: ignore[union-attr]
        else:
            w = ObjectWords(
                "box" if o.shape == "box" else "ball",
                o.colour,
                size=L.get(f"{o.name}.size"),
                mass=L.get(f"{o.name}.mass"),
                restitution=L.get(f"{o.name}.restitution"),
            )
        objects.append(w)
        label_of[o.name] = w.label
    d = Description(
        scene=spec.scene,
        objects=objects,
        gravity=L.get("gravity") if spec.camera.view == "side" else None,
        floor=L.get("floor"),
        screens=[f.colour for f in spec.fixtures if f.kind == "occluder"],
        policy=L.get("agent.policy"),
        target=label_of.get(L.get("agent.target", "")),
        goal=L.get("agent.goal"),
    )
    screen_of = {f.name: f.colour for f in spec.fixtures}
    clauses: list[tuple[int, int, tuple[Any, ...]]] = []  # (frame, order within a frame, clause)
    for e in events:
        t = e["type"]
        if t == "wall":
            clauses.append((e["frame"], 0, ("hits", label_of[e["object"]], WALLS[e["wall"]])))
        elif t == "collision":
            a, b = e["objects"]
            if spec.objects[[o.name for o in spec.objects].index(b)].role == "agent":
                a, b = b, a  # the agent hits things, not the other way round
            clauses.append((e["frame"], 0, ("hits", label_of[a], label_of[b])))
        elif t == "break":
            clauses.append((e["frame"], 1, ("shatters", label_of[e["object"]], e["fragments"])))
        elif t == "occlusion":
            clauses.append((e["start"], 2, ("disappears", label_of[e["object"]], f"{screen_of.get(e['occluder'], 'grey')} screen")))
            if e["end"] is not None:
                clauses.append((e["end"], 3, ("reappears", label_of[e["object"]])))
    clauses.sort(key=lambda c: c[:2])
    out: list[tuple[Any, ...]] = []
    for _, _, c in clauses:
        if c not in out[-1:] and len(out) < MAX_EVENT_CLAUSES:
            out.append(c)
    d.events = out
    return d


# -- description -> text -----------------------------------------------------------------------
def number_word(n: int) -> str:
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _count(n: int, noun: str) -> str:
    plural = "boxes" if noun == "box" else f"{noun}s"
    return _a(noun) if n == 1 else f"{number_word(n)} {plural}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _gravity_phrase(g: str | None) -> str:
    if g is None:
        return ""
    return " with no gravity" if g == "zero" else f" under {g} gravity"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def render(d: Description, *, short: bool = False) -> str:
    """The caption of a description (the detailed one unless ``short``)."""
    things = [o for o in d.objects if o.noun in ("ball", "box")]
    balls = [o for o in things if o.noun == "ball"]
    pane = next((o for o in d.objects if o.noun == "pane"), None)
    agent = any(o.noun == "agent" for o in d.objects)
    if d.scene == "shatter":
        broke = any(e[0] == "shatters" for e in d.events)
        head = "a ball shatters a glass pane" if broke else "a ball is thrown at a glass pane"
        if not short:
            head = f"a ball is thrown at a {pane.strength + ' ' if pane and pane.strength else ''}glass pane"
    elif d.scene == "occlusion":
        screens = _join([_a(f"{c} screen") for c in d.screens]) if d.screens else "a screen"
        head = f"{_count(len(balls), 'ball')} {'moves' if len(balls) == 1 else 'move'} behind {screens}"
    elif d.scene == "push":
        head = f"a white agent pushes {_count(len(things), 'object')}"
        if not short:
            head = f"a white agent pushes {_join([_a(f'{o.colour} {o.noun}') for o in things])}"
            head += f" on a {d.floor} floor, seen from above" if d.floor else ", seen from above"
    else:
        head = f"{_count(len(balls), 'ball')} {'bounces' if len(balls) == 1 else 'bounce'}"
        if not short:
            head += " in a box"
    if short:
        return head
    parts = [_sentence(head + _gravity_phrase(d.gravity))]
    for o in things:
        adjs = [w for w in (o.size, o.mass, o.restitution) if w]
        if adjs:
            parts.append(_sentence(f"the {o.label} is {_join(adjs)}"))
    if pane is not None and pane.pieces:
        parts.append(_sentence(f"the pane is cut into {number_word(pane.pieces)} pieces"))
    if agent and d.scene != "push":
        parts.append(_sentence("a white agent moves among them"))
    if d.policy == "scripted" and d.target and d.goal:
        parts.append(_sentence(f"the agent pushes the {d.target} toward the {d.goal}"))
    elif d.policy == "random":
        parts.append(_sentence("the agent moves at random"))
    if d.events:
        clauses = []
        for e in d.events:
            if e[0] == "hits":
                clauses.append(f"the {e[1]} hits the {e[2]}")
            elif e[0] == "shatters":
                clauses.append(f"the {e[1]} shatters into {number_word(e[2])} pieces")
            elif e[0] == "disappears":
                clauses.append(f"the {e[1]} disappears behind the {e[2]}")
            elif e[0] == "reappears":
                clauses.append(f"the {e[1]} reappears")
        parts.append(_sentence(", then ".join(clauses)))
    return " ".join(parts)


def caption(spec: SceneSpec, events: list[dict[str, Any]]) -> str:
    """Short caption: what kind of scene, how many objects."""
    return render(describe(spec, events), short=True)


def caption_detailed(spec: SceneSpec, events: list[dict[str, Any]]) -> str:
    """Detailed caption: objects with their visible and hidden properties, the
    physics, and the salient events in order."""
    return render(describe(spec, events))


# -- text -> description -------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def static_caption(text: str) -> str:
    """A detailed caption without its events: what is known of a scene before anything
    happens (what a simulator's prompt says)."""
    return render(parse(text).without_events())


def tokenize(text: str) -> list[str]:
    """Lower-case words and the grammar's multi-word phrases, punctuation dropped
    except sentence ends ('.') and clause commas (',')."""
    text = re.sub(r"([.,;!?])", r" \1 ", text.lower())
    words = [w for w in text.split() if w not in (";", "!", "?")]
    out: list[str] = []
    i = 0
    while i < len(words):
        for p in _PHRASES:
            n = p.count(" ") + 1
            if " ".join(words[i : i + n]) == p:
                out.append(p)
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


WORD_NUMBERS = {w: i for i, w in enumerate(NUMBERS)}  # "two" -> 2
_SIZE, _MASS, _REST = set(SIZES), set(MASSES), set(RESTITUTIONS)
ADJECTIVES = frozenset((*SIZES, *MASSES, *RESTITUTIONS, *STRENGTHS))  # the words that may stand before a colour


def parse(text: str) -> Description:
    """Read a caption (or a looser prompt) back into a :class:`Description`.

    Understands every caption :func:`render` writes, and prompts made of the same
    words ("three bouncy balls, low gravity", "a ball hits a fragile pane"). Words
    outside the vocabulary are listed in ``unknown``.
    """
    toks = tokenize(text)
    known = set(VOCABULARY) | set(_PHRASES) | {".", ","}
    d = Description(scene="")
    d.unknown = [t for t in toks if t not in known and not t.isdigit()]
    sentences: list[list[str]] = [[]]
    for t in toks:
        if t == ".":
            sentences.append([])
        else:
            sentences[-1].append(t)
    sentences = [s for s in sentences if s]
    by_label: dict[str, ObjectWords] = {}

    def obj(noun: str, colour: str | None) -> ObjectWords:
        label = noun if noun in ("pane", "agent") else f"{colour} {noun}"
        if label not in by_label:
            w = ObjectWords(noun, colour or (palette.PANE_COLOUR[0] if noun == "pane" else palette.AGENT_COLOUR[0]))
            by_label[label] = w
            d.objects.append(w)
        return by_label[label]

    for s in sentences:
        _parse_sentence(s, d, obj, by_label)
    if not d.scene:
        d.scene = _guess_scene(toks, d)
    # "Two balls bounce ... The red ball is ... The blue ball is ...": the coloured
    # balls are the counted ones, so drop as many uncoloured placeholders.
    for noun in ("ball", "box"):
        anonymous = [o for o in d.objects if o.noun == noun and not o.colour]
        named = [o for o in d.objects if o.noun == noun and o.colour]
        for o in anonymous[: len(named)]:
            d.objects.remove(o)
    # The specs' order: balls and boxes, then the pane, then the agent.
    d.objects.sort(key=lambda o: {"pane": 1, "agent": 2}.get(o.noun, 0))
    return d


def _guess_scene(toks: list[str], d: Description) -> str:
    if "pane" in toks or "glass pane" in toks or "shatters" in toks:
        return "shatter"
    if "screen" in toks or "screens" in toks or "behind" in toks:
        return "occlusion"
    # Only the push scene has an agent, boxes and a floor with friction.
    if "pushes" in toks or "push" in toks or "agent" in toks or "box" in toks or "boxes" in toks or d.floor:
        return "push"
    return "bouncing_balls"


def _label_at(s: list[str], i: int) -> tuple[str | None, str | None, int]:
    """(colour, noun, next index) of a noun phrase starting at s[i] (after 'the')."""
    colour = None
    if i < len(s) and s[i] in COLOURS:
        colour, i = s[i], i + 1
    if i < len(s) and s[i] in ("ball", "box", "pane", "agent", "glass pane"):
        return colour, ("pane" if s[i] == "glass pane" else s[i]), i + 1
    return None, None, i


def _parse_sentence(s: list[str], d: Description, obj: Any, by_label: dict[str, ObjectWords]) -> None:
    # Gravity and floor, wherever they are said.
    for i, t in enumerate(s):
        if t == "no gravity":
            d.gravity = "zero"
        elif t == "gravity" and i > 0 and s[i - 1] in GRAVITIES:
            d.gravity = s[i - 1]
        elif t == "floor" and i > 0 and s[i - 1] in FLOORS:
            d.floor = s[i - 1]
    # "the red ball is small, heavy and very bouncy."
    if len(s) > 3 and s[0] == "the" and "is" in s and not any(v in s for v in ("hits", "disappears", "reappears", "shatters into", "pushes")):
        colour, noun, j = _label_at(s, 1)
        if noun and j < len(s) and s[j] == "is":
            if noun == "pane" and s[j + 1 : j + 3] == ["cut", "into"]:
                n = s[j + 3] if j + 3 < len(s) else ""
                obj("pane", None).pieces = WORD_NUMBERS.get(n, int(n) if n.isdigit() else None)
                return
            w = obj(noun, colour)
            for a in s[j + 1 :]:
                if a in _SIZE:
                    w.size = a
                elif a in _MASS:
                    w.mass = a
                elif a in _REST:
                    w.restitution = a
            return
    # "the agent pushes the red box toward the top left." / "the agent moves at random."
    if s[:2] == ["the", "agent"] and len(s) > 2 and s[2] in ("pushes", "moves") and "then" not in s and "," not in s:
        obj("agent", None)
        if s[2] == "moves" and "at random" in s:
            d.policy = "random"
            return
        if s[2] == "pushes" and "toward" in s:
            k = s.index("toward")
            colour, noun, _ = _label_at(s, 4)
            if noun:
                d.policy, d.target = "scripted", f"{colour} {noun}" if noun not in ("pane", "agent") else noun
                d.goal = " ".join(x for x in s[k + 1 :] if x != "the") or None
                return
    # Event clauses: "the red ball hits the floor, then ..."
    if s and s[0] == "the" and any(v in s for v in ("hits", "disappears", "reappears", "shatters into")):
        clause: list[str] = []
        for t in [*s, ","]:
            if t == ",":
                _parse_event([x for x in clause if x != "then"], d, obj)
                clause = []
            else:
                clause.append(t)
        return
    # The scene sentence (or a loose prompt): counts, nouns and adjectives.
    _parse_scene_sentence(s, d, obj)


def _parse_event(c: list[str], d: Description, obj: Any) -> None:
    if len(c) < 3 or c[0] != "the":
        return
    colour, noun, j = _label_at(c, 1)
    if not noun or j >= len(c):
        return
    subject = obj(noun, colour).label
    verb = c[j]
    rest = [x for x in c[j + 1 :] if x != "the"]
    if verb == "hits" and rest:
        if rest[0] in WALLS.values():
            d.events.append(("hits", subject, rest[0]))
        else:
            oc, on, _ = _label_at(rest, 0)
            if on:
                d.events.append(("hits", subject, obj(on, oc).label))
    elif verb == "shatters into" and rest:
        n = rest[0]
        d.events.append(("shatters", subject, WORD_NUMBERS.get(n, int(n) if n.isdigit() else 0)))
    elif verb == "disappears" and rest[:1] == ["behind"]:
        d.events.append(("disappears", subject, " ".join(rest[1:])))
    elif verb == "reappears":
        d.events.append(("reappears", subject))


def _parse_scene_sentence(s: list[str], d: Description, obj: Any) -> None:
    if "bounce" in s or "bounces" in s:
        d.scene = d.scene or "bouncing_balls"
    if "thrown" in s or "glass pane" in s or "pane" in s:
        d.scene = "shatter"
    if "behind" in s:
        d.scene = "occlusion"
    if "pushes" in s or "push" in s or "seen from above" in s:
        d.scene = "push"
    # Screens: "behind a grey screen and a dark grey screen"
    for i, t in enumerate(s):
        if t in ("screen", "screens") and i > 0 and s[i - 1] in palette.OCCLUDER_COLOURS:
            d.screens.append(s[i - 1])
    # Noun phrases: [count] [adjectives] [colour] noun
    count, adjs, colour = 1, [], None
    for t in s:
        if t in WORD_NUMBERS or t.isdigit():
            count = WORD_NUMBERS.get(t, int(t) if t.isdigit() else 1)
        elif t in ("a", "an"):
            count = 1
        elif t in _SIZE or t in _MASS or t in _REST or t in STRENGTHS:
            adjs.append(t)
        elif t in COLOURS and t not in palette.OCCLUDER_COLOURS:
            colour = t
        elif t in ("ball", "balls", "box", "boxes", "pane", "glass pane", "agent", "object", "objects"):
            noun = {"balls": "ball", "boxes": "box", "glass pane": "pane", "objects": "object"}.get(t, t)
            made = []
            if noun == "object":
                pass  # "pushes three objects": a count, shapes unknown
            elif noun in ("pane", "agent"):
                made = [obj(noun, None)]
            elif colour is not None:
                made = [obj(noun, colour)]
            else:  # uncoloured: placeholders the prompt expansion fills in
                made = [_anonymous(d, noun) for _ in range(count)]
            for w in made:
                for a in adjs:
                    if a in _SIZE:
                        w.size = a
                    elif a in _MASS:
                        w.mass = a
                    elif a in _REST:
                        w.restitution = a
                    elif a in STRENGTHS:
                        w.strength = a
            count, adjs, colour = 1, [], None
        elif t in (",", "and"):
            continue


def _anonymous(d: Description, noun: str) -> ObjectWords:
    w = ObjectWords(noun, "")
    d.objects.append(w)
    return w
