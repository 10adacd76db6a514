"""Drive the learned world live: ``python -m worldsim.play scene=push [checkpoint=RUN]``.

A window shows the learned world beside its physics twin (the same seed, the same
actions), driven by the keyboard: arrows or WASD set the agent's target velocity
(scenes without an agent ignore it), R resets (the next seed), Tab switches to the
next scene, E edits the prompt (type, then Enter resets with it; Esc cancels), Q or
Esc quits. The scene, seed, step, frame rate and prompt are shown. ``max_steps=N``
stops after N steps; ``script="right*10,up+right*5,reset,scene"`` presses those keys
instead of the keyboard (one token a step), for scripts and tests; ``out=DIR`` writes
what was played (``play.mp4``, ``play.gif``, ``play.png``) and the last window
(``window.png``). Headless runs work with ``SDL_VIDEODRIVER=dummy``. Needs pygame
(``pip install "worldsim[play]"``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import worldsim  # noqa: E402,F401  (registers the environments)
from worldsim.cli import entry_point
from worldsim.config import job_config, typed  # noqa: E402
from worldsim.sim.scenes import SCENES  # noqa: E402
from worldsim.video import write_labelled  # noqa: E402

try:
    import pygame  # noqa: E402
except ImportError:  # an install without the play extra
    pygame = None

KEYS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, 1.0), "down": (0.0, -1.0)}


class PlayError(ValueError):
    """A play session that cannot start; the message says how to fix it."""


@dataclass
class PlayConfig:
    """conf/play.yaml."""

    checkpoint: str | None = None  # null: the bundled reference model
    scene: str = "push"
    engine: str = "pybullet"
    context: int = 4
    seed: int = 0
    prompt: str | None = None  # null: the physics twin's description
    sampler_steps: int | None = None  # null: the model's own (flow.sampler_steps)
    scale: int = 6  # window pixels per frame pixel
    fps: float = 20.0  # the most steps a second (the model may be slower)
    max_steps: int | None = None
    script: str | None = None  # keys to press instead of the keyboard, one token a step
    out: str | None = None  # write the played frames and the last window here
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.scene not in SCENES:
            raise PlayError(f"unknown scene {self.scene!r}; valid scenes: {', '.join(SCENES)}")
        if self.scale < 1 or self.fps <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise PlayError("scale must be at least 1, fps positive and max_steps at least 1 (or null)")
        parse_script(self.script)


def parse_script(script: str | None) -> list[set[str]] | None:
    """``"right*3,up+right,reset,scene,none"`` -> one set of pressed names per step."""
    if script is None:
        return None
    steps: list[set[str]] = []
    for token in (t.strip() for t in script.split(",") if t.strip()):
        name, _, times = token.partition("*")
        keys = set(name.split("+"))
        bad = keys - set(KEYS) - {"reset", "scene", "none"}
        if bad or (times and not times.isdigit()):
            raise PlayError(f"script token {token!r}: keys are {', '.join(KEYS)}, reset, scene or none, joined by + and repeated by *N")
        steps += [keys - {"none"}] * (int(times) if times else 1)
    return steps


def action_of(pressed: set[str]) -> np.ndarray:
    """The agent's target velocity for the pressed direction keys."""
    a = np.zeros(2, np.float32)
    for name in pressed & set(KEYS):
        a += KEYS[name]
    return np.clip(a, -1.0, 1.0)


class Session:
    """The two worlds, stepped together, and what the window shows of them."""

    def __init__(self, cfg: PlayConfig):
        self.cfg = cfg
        self.scene = cfg.scene
        self.seed = cfg.seed
        self.prompt = cfg.prompt
        self.physics: Any = None
        self.learned: Any = None
        self.record: dict[str, list[np.ndarray]] = {"physics": [], "learned": []}
        self.reset()

    def reset(self) -> None:
        cfg = self.cfg
        for env in (self.physics, self.learned):
            if env is not None:
                env.close()
        self.learned = gym.make("worldsim:LearnedWorld-v0", checkpoint=cfg.checkpoint, scene=self.scene, engine=cfg.engine, context=cfg.context,
                                sampler_steps=cfg.sampler_steps, device=cfg.device, precision=cfg.precision)
        h, w = self.learned.observation_space.shape[:2]
        self.physics = gym.make("PhysicsWorld-v0", scene=self.scene, engine=cfg.engine, resolution=f"{h}x{w}")  # the model's size
        frame, _ = self.physics.reset(seed=self.seed)
        for _ in range(cfg.context - 1):  # the learned world starts where the twin is after its context
            frame = self.physics.step(np.zeros(2, np.float32))[0]
        options = {"prompt": self.prompt} if self.prompt else None
        learned, info = self.learned.reset(seed=self.seed, options=options)
        self.caption = info["caption"]
        self.frames = (frame, learned)
        self.step_count = 0

    def step(self, action: np.ndarray) -> None:
        p = self.physics.step(action)[0]
        q = self.learned.step(action)[0]
        self.frames = (p, q)
        self.step_count += 1
        self.record["physics"].append(p)
        self.record["learned"].append(q)

    def next_scene(self) -> None:
        names = list(SCENES)
        self.scene = names[(names.index(self.scene) + 1) % len(names)]
        self.prompt = None
        self.reset()

    def close(self) -> None:
        self.physics.close()
        self.learned.close()


def run_play(cfg: PlayConfig) -> dict[str, Any]:
    """Everything ``python -m worldsim.play`` does; returns what it played."""
    if pygame is None:
        raise PlayError('play needs pygame: pip install "worldsim[play]" (or pip install pygame)')
    script = parse_script(cfg.script)
    session = Session(cfg)
    pygame.display.init()  # no audio: nothing here plays sound
    pygame.font.init()
    h, w = session.frames[0].shape[:2]
    tile = (w * cfg.scale, h * cfg.scale)
    bar = 28
    screen = pygame.display.set_mode((2 * tile[0] + 12, tile[1] + 3 * bar + 8))
    pygame.display.set_caption("worldsim: physics | learned")
    font = pygame.font.Font(None, 22)
    clock = pygame.time.Clock()
    editing: str | None = None
    played = 0  # steps (and key presses) over the whole session, across resets
    rate, last = 0.0, time.perf_counter()
    running = True
    try:
        while running:
            pressed: set[str] = set()
            if script is not None:
                if played >= len(script):
                    break
                pressed = set(script[played])
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    running = False
                elif event.type == pygame.KEYDOWN and editing is not None:
                    if event.key == pygame.K_RETURN:
                        session.prompt, editing = editing.strip() or None, None
                        session.reset()
                    elif event.key == pygame.K_ESCAPE:
                        editing = None
                    elif event.key == pygame.K_BACKSPACE:
                        editing = editing[:-1]
                    else:
                        editing += event.unicode
                elif event.type == pygame.KEYDOWN:
                    if event.key in (pygame.K_q, pygame.K_ESCAPE):
                        running = False
                    elif event.key == pygame.K_r:
                        pressed.add("reset")
                    elif event.key == pygame.K_TAB:
                        pressed.add("scene")
                    elif event.key == pygame.K_e:
                        editing = session.prompt or session.caption
            if not running:
                break
            if script is None and editing is None:
                keys = pygame.key.get_pressed()
                for name, codes in (("right", (pygame.K_RIGHT, pygame.K_d)), ("left", (pygame.K_LEFT, pygame.K_a)),
                                    ("up", (pygame.K_UP, pygame.K_w)), ("down", (pygame.K_DOWN, pygame.K_s))):
                    if any(keys[c] for c in codes):
                        pressed.add(name)
            if "reset" in pressed:
                session.seed += 1
                session.reset()
            elif "scene" in pressed:
                session.next_scene()
            if editing is None:
                session.step(action_of(pressed))
                played += 1
                now = time.perf_counter()
                rate = 0.9 * rate + 0.1 / max(now - last, 1e-6) if rate else 1.0 / max(now - last, 1e-6)
                last = now
            draw(screen, font, session, tile, bar, rate, editing)
            pygame.display.flip()
            if cfg.max_steps is not None and played >= cfg.max_steps:
                break
            clock.tick(cfg.fps)
        result = {"steps": played, "scene": session.scene, "seed": session.seed, "steps_per_s": round(rate, 2)}
        if cfg.out:
            out = Path(cfg.out)
            out.mkdir(parents=True, exist_ok=True)
            pygame.image.save(screen, str(out / "window.png"))
            if session.record["physics"]:
                write_labelled(out / "play", [(f"{session.scene} seed {session.seed}", [np.stack(session.record["physics"]),
                                                                                        np.stack(session.record["learned"])])],
                               ["physics", "learned"], fps=cfg.fps)
            result["out"] = str(out)
        return result
    finally:
        session.close()
        pygame.quit()


def draw(screen: Any, font: Any, session: Session, tile: tuple[int, int], bar: int, rate: float, editing: str | None) -> None:
    screen.fill((32, 32, 32))
    for i, (name, frame) in enumerate(zip(("physics", "learned"), session.frames)):
        x = 4 + i * (tile[0] + 4)
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        screen.blit(pygame.transform.scale(surface, tile), (x, bar))
        screen.blit(font.render(name, True, (235, 235, 235)), (x + 4, 6))
    status = f"{session.scene}   seed {session.seed}   step {session.step_count}   {rate:.1f} steps/s      arrows/WASD move  R reset  Tab scene  E prompt  Q quit"
    screen.blit(font.render(status, True, (235, 235, 235)), (4, bar + tile[1] + 6))
    text = f"prompt> {editing}_" if editing is not None else f"prompt: {session.prompt or session.caption}"
    screen.blit(font.render(text[:160], True, (200, 220, 255) if editing is not None else (200, 200, 200)), (4, 2 * bar + tile[1] + 6))


@entry_point("play", errors=(PlayError,))
def main(cfg: DictConfig) -> None:
    plain = job_config(cfg)
    plain["scene"] = HydraConfig.get().runtime.choices["scene"]
    plain["engine"] = plain["engine"]["name"]
    result = run_play(typed(PlayConfig, plain, "play"))
    print(f"played {result['steps']} steps of {result['scene']} ({result['steps_per_s']} steps/s)" + (f"; wrote {result['out']}" if "out" in result else ""))


if __name__ == "__main__":
    main()
