"""The learned simulator: a trained world model stepped one frame at a time.

``reset`` takes context frames (from the physics twin, from an image, or none) and a
prompt; ``step(actions)`` returns the next frame of every world in the batch. Each
step denoises one new latent frame from noise with a few sampler steps (the model's
own, ``flow.sampler_steps``: 1 for the bundled model; Euler) under block-causal attention: the keys and values of past frames sit in a
:class:`~worldsim.models.dit.KVCache` and are never recomputed, so a step costs the
same after 10 frames as after 1,000 (the cache keeps a sliding window of the last
``window`` frames). The finished frame then enters the cache once, at a fixed small
noise level (``context_noise``, against drift: the model was trained with noisy
context), in the same DiT call as the next step's first denoising step (one call,
not two), and the autoencoder decodes it with its streaming cache. With an anchored
model (``model.anchor``), the new frame is denoised as its difference from the
previous frame (as it was trained: :func:`worldsim.diffusion.flow.simulator_inputs`).

Randomness: every draw comes from one ``torch.Generator`` per world, so a seed fixes
a rollout, and a batch of worlds gives what each would give alone.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np
import torch

from worldsim.diffusion.flow import add_noise, velocity_from
from worldsim.diffusion.sampling import GUIDANCE_ROWS, SamplerConfig, combine_guidance, guidance_drops, ode_step, time_grid, uses_guidance
from worldsim.frames import to_model, to_uint8
from worldsim.models.dit import TextState
from worldsim.models.text import pad_text, text_bucket
from worldsim.models.world import load_world
from worldsim.runtime import CastWeights, autocast, compute_dtype, resolve_device, resolve_precision

UNDECODED = 64  # latents stepped without decoding that wait for pictures() (a decoder with temporal layers)
RECOMPILE_LIMIT = 64  # graphs of the DiT's forward in one process (torch's default: 8), see LearnedSimulator.__init__


def inference_compile_options(device: torch.device) -> dict[str, Any]:
    """Inductor's settings for stepping a compiled DiT: on a CPU, the graph called from
    generated C++ rather than Python (a small model's step is mostly per-kernel
    overhead); on a GPU, the defaults. Applied around each compiled call with
    ``torch._inductor.config.patch`` (where compiling happens).

    The weights are not frozen into the graph (``freezing``, oneDNN-prepacked
    constants): on two cores, paired, freezing was no faster beyond the host's noise
    (unfrozen steps took 0.98x and 1.05x its time for one world in two runs, 1.00x for
    64 worlds), and its prepacked weights cannot be pickled, so Inductor's on-disk cache
    skipped the graphs and every process compiled them anew (62-76 s). Unfrozen, the
    first process compiles (67-85 s here, one world) and later ones load the compiled
    kernels from the cache and only trace (17-26 s); and the compiled steps read the
    model's weights as they are at each call."""
    if device.type != "cpu":
        return {}
    return {"freezing": False, "cpp_wrapper": True}


class LearnedSimulator:
    """Step a trained world model like a physics engine. See the module docstring.

    Args:
      checkpoint: a DiT run directory or checkpoint file.
      sampler: steps, method and guidance scales (default: the model's own steps, Euler, no guidance;
        a ``SamplerConfig`` without ``steps`` keeps the model's own steps beside its other settings).
      window: latent frames the KV cache keeps (default: the history the model was
        trained with, clip_frames - 1, for models trained on the simulator's task; else 8).
      context_noise: noise level of frames in the cache (default: the sampler's).
      use_cache: False recomputes the whole window at every denoising step instead
        of caching keys and values (the same result, slower: for comparison).
      compile: ``torch.compile`` the DiT's per-frame call (static shapes, settings from
        :func:`inference_compile_options`; the compiled kernels go to Inductor's on-disk
        cache, so a later process starts faster); where compiling fails the eager module
        is used, with a warning.

    ``timings`` accumulates seconds spent in the DiT, in decoding and in all of
    ``step`` (the rest is Python and small operations), and the steps taken.

    Steps run under ``torch.inference_mode``. They read ``model``'s weights as they are at
    each reset and step; stepping eagerly in bf16 they go through a twin of the DiT with
    its linear weights cast to bf16 once (:class:`~worldsim.runtime.CastWeights`), which
    follows every change but an edit in place through ``.data`` (PyTorch counts none).
    """

    def __init__(
        self,
        checkpoint: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        sampler: SamplerConfig | None = None,
        window: int | None = None,
        context_noise: float | None = None,
        use_cache: bool = True,
        compile: bool = False,
    ):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        loaded = load_world(checkpoint, map_location="cpu")
        self.model = loaded.model.to(self.device)
        self.ae = loaded.autoencoder.to(self.device)
        self.config = loaded.config
        self.checkpoint = loaded.path
        self.trained_step = loaded.step
        self.trained_compute = loaded.compute
        if self.ae.temporal_factor != 1:
            raise ValueError(
                f"{loaded.path}: the simulator steps one frame at a time; its autoencoder has temporal factor "
                f"{self.ae.temporal_factor} (train one with ae.temporal_factor=1)"
            )
        self.sampler = sampler or SamplerConfig()
        if self.sampler.steps is None:  # the trained world's own choice
            self.sampler = dataclasses.replace(self.sampler, steps=self.config.flow.sampler_steps)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a whole number of frames, at least 1 (or None: the model's own {self.config.history}), got {window!r}")
        self.window = self.config.history if window is None else window
        self.anchored = self.config.dit.anchor
        self.prediction = self.config.flow.prediction
        self.timings = {"dit_s": 0.0, "decode_s": 0.0, "step_s": 0.0, "steps": 0}
        self._dit: Any = None  # what a DiT call calls: the compiled module, or _eager()
        self._cast: CastWeights | None = None  # stepping eagerly in bf16: the twin _eager() calls, brought up to date at each reset and step
        self.compiled = False  # whether steps run the compiled DiT (False again if compiling fails, or at Dynamo's recompile limit)
        # Inductor's settings and a recompile limit above Dynamo's 8 (which counts the graphs of
        # DiT.forward over every model in the process: three kinds of call a batch size, more
        # when recomputing the window, so a second compiled simulator would step eager), made
        # once and entered around each compiled call (making them costs more than the entering).
        # At the limit Dynamo would step eagerly without a word, and `compiled` would say
        # otherwise: it raises instead, and the simulator turns eager openly (see _call_dit);
        # not under Dynamo's suppress_errors, which it refuses beside that.
        self._compile_settings = (
            torch._inductor.config.patch(inference_compile_options(self.device)),
            torch._dynamo.config.patch(
                recompile_limit=max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit),
                fail_on_recompile_limit_hit=not torch._dynamo.config.suppress_errors,
            ),
        )
        if compile:
            try:
                # One static graph per kind of call (store, compute, both): frame indices and
                # the cache's ring state are tensors, so nothing recompiles as a rollout goes on.
                self._dit = torch.compile(self.model.dit, dynamic=False)
                self.compiled = True
            except Exception as e:  # no compiler here (a CPU without a C++ toolchain, an old Python)
                warnings.warn(f"torch.compile is unavailable ({type(e).__name__}: {e}); stepping the eager model", stacklevel=2)
        if not self.compiled:
            self._dit = self._eager()
        self.use_cache = use_cache
        self.context_noise = self.sampler.context_noise if context_noise is None else context_noise
        self.height, self.width = self.config.data.resolution
        self.fps = int(self.config.data.fps)
        self.action_dim = int(self.config.dit.action_dim)
        self.tokenizer = self.model.text.tokenizer
        self._state: dict[str, Any] | None = None

    # -- public ------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return 0 if self._state is None else self._state["batch"]

    @torch.inference_mode()
    def reset(
        self,
        context_frames: np.ndarray | None,
        prompt: str | list[str],
        generator: torch.Generator | list[torch.Generator],
        *,
        context_actions: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Start new worlds and return their current frames (B, H, W, 3) uint8.

        Args:
          context_frames: (B, K, H, W, 3) or (K, H, W, 3) uint8, the frames so far;
            None: the first frame is generated from the prompt alone.
          prompt: one caption for all worlds or one per world.
          generator: one per world (or one, for a single world).
          context_actions: (B, K, A) actions that led to the context frames (default 0).
          batch_size: the number of worlds when there are no context frames.
        """
        gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
        if not all(isinstance(g, torch.Generator) for g in gens):
            raise ValueError(f"generator must be a torch.Generator or one per world, got {[type(g).__name__ for g in gens]}")
        if context_frames is not None:
            frames = np.asarray(context_frames)
            if frames.ndim == 4:
                frames = frames[None]
            if frames.ndim != 5 or frames.shape[2:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
                raise ValueError(f"context_frames must be (B, K, {self.height}, {self.width}, 3) uint8, got {frames.shape} {frames.dtype}")
            b, k = frames.shape[:2]
        else:
            b, k = batch_size or len(gens), 0
            if b < 1:
                raise ValueError(f"batch_size must be at least 1, got {b}")
        if len(gens) != b:
            raise ValueError(f"pass one generator per world: {b} worlds, {len(gens)} generators")
        prompts = [prompt] * b if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else []
        if len(prompts) != b or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string, or one string per world ({b}); got {prompt!r}")
        acts = np.zeros((b, k, self.action_dim), np.float32) if context_actions is None else np.asarray(context_actions)
        if acts.shape != (b, k, self.action_dim) or not np.issubdtype(acts.dtype, np.number) or not np.all(np.isfinite(acts)):
            raise ValueError(f"context_actions must be finite numbers of shape ({b}, {k}, {self.action_dim}), one per context frame, "
                             f"got {acts.shape} {acts.dtype}")
        acts = acts.astype(np.float32)
        # every check above is done before the running rollout is replaced: a refused reset leaves it as it was
        branches = GUIDANCE_ROWS if uses_guidance(self.sampler) else 1
        self._follow_weights()
        self._state = {
            "batch": b,
            "gens": gens,
            "grid": time_grid(self.sampler.steps, self.sampler.shift, self.device),  # the sampler's noise levels, once a rollout
            "branches": branches,
            "text": self._text(prompts, branches),
            "cache": self.model.dit.new_cache(
                b * branches, (self.height // self.ae.spatial_factor, self.width // self.ae.spatial_factor), self.window,
                compute_dtype(self.precision), self.device,
            ),
            "history": [],  # without the cache: (noisy latent, action) of the frames in the window
            "pending": None,  # with the cache: the finished frame (noisy latent, action, index) the next DiT call stores
            "undecoded": [],  # latents stepped with decode=False, decoded before the next frame is
            "recent": [],  # the last frames as the cache holds them, newest first, (B, 1, C, h, w) each: an anchored step's anchor
            "decoder": {},
            "frame": 0,
            "unknown": [self.tokenizer.unknown(p) for p in prompts],
        }
        if k == 0:  # the first frame, from the prompt alone
            return self.step(np.zeros((b, self.action_dim), np.float32))
        video = to_model(frames, self.device)  # (B, K, 3, H, W)
        with autocast(self.device, self.precision):
            latents = self.ae.encode(video).float()  # (B, K, C, h, w)
            self._commit(latents, torch.from_numpy(acts).to(self.device))
            for i in range(k):  # the decoder's temporal layers remember the last frames
                self.ae.decode_stream(latents[:, i : i + 1], self._state["decoder"])
        self._state["last"] = np.array(frames[:, -1])  # a copy: the caller's context stays the caller's
        return self._state["last"].copy()

    @torch.inference_mode()
    def step(self, actions: np.ndarray, *, decode: bool = True) -> np.ndarray:
        """Advance every world one frame under ``actions`` (B, A) float32 in [-1, 1]
        (finite values outside are clipped); returns the frames (B, H, W, 3) uint8, or
        with ``decode=False`` the latents (B, C, h, w) float32 without decoding them
        (for agents that learn on latents; frames decoded later catch up first)."""
        tic = time.perf_counter()
        st = self._require_state()
        b = st["batch"]
        a = np.asarray(actions)
        if a.shape != (b, self.action_dim) or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"actions must be a float array of shape ({b}, {self.action_dim}), got {a.shape} {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        self._follow_weights()
        act = torch.from_numpy(np.clip(a, -1.0, 1.0).astype(np.float32)).to(self.device)[:, None]  # (B, 1, A)
        c, f = self.ae.latent_channels, self.ae.spatial_factor
        shape = (c, self.height // f, self.width // f)
        x = self._noise(shape)  # (B, 1, C, h, w)
        recent = st["recent"] if self.anchored else []  # empty: the first frame, from the prompt alone
        anchor = None
        if recent:  # the last frames as the cache holds them, newest first (the oldest repeated before the start)
            m = self.config.dit.anchor_frames
            anchor = torch.cat([recent[min(j, len(recent) - 1)] for j in range(m)], dim=2)  # (B, 1, m*C, h, w)
        grid = st["grid"]
        with autocast(self.device, self.precision):
            for i in range(len(grid) - 1):  # the noise levels made at reset (the steps and shift the sampler had then)
                x = ode_step(lambda x, t: self._velocity(x, t, act, anchor), x, grid[i], grid[i + 1], self.sampler.method)
            if recent:
                x = st["last_latent"] + x  # the step denoised the difference from the previous frame (as generated, before its noise)
            bad = ~torch.isfinite(x).flatten(1).all(1)
            if bad.any():  # a diverged model's frame would decode to black, unseen: say so; the rollout cannot go on
                self._state = None  # half a step was taken (the cache stored the last frame): only a reset starts again
                raise FloatingPointError(
                    f"the model's frame {st['frame']} is not finite (NaN or inf) in worlds {torch.nonzero(bad).flatten().tolist()}; "
                    f"its weights ({self.checkpoint}) may have diverged. The rollout has ended: reset to start another"
                )
            self._commit(x, act)
            st["undecoded"].append(x)
            self._bound_backlog(st)
            if not decode:
                self._account(tic)
                return x[:, 0].float().cpu().numpy().copy()  # a copy: x is the next step's anchor base
        out = self.pictures()
        self._account(tic)
        return out

    @torch.inference_mode()
    def pictures(self) -> np.ndarray:
        """The worlds' current frames (B, H, W, 3) uint8, decoding what was stepped
        without decoding (the decoder's temporal layers see every latent frame). A new
        array each call: editing it changes nothing the simulator holds."""
        st = self._require_state()
        if st["undecoded"]:
            d0 = time.perf_counter()
            with autocast(self.device, self.precision):
                for z in st["undecoded"]:
                    frame = self.ae.decode_stream(z, st["decoder"])[:, 0]  # (B, 3, H, W)
            st["undecoded"] = []
            st["last"] = to_uint8(frame)  # (B, H, W, 3)
            self.timings["decode_s"] += time.perf_counter() - d0
        return st["last"].copy()

    def _bound_backlog(self, st: dict[str, Any]) -> None:
        """Latents stepped without decoding wait for ``pictures()``: pixel space keeps only
        the last (decoding it needs nothing before it); a decoder with temporal layers
        decodes the oldest once ``UNDECODED`` wait, so memory stays flat however long an
        agent steps on latents alone."""
        if self.ae.config.identity:
            del st["undecoded"][:-1]
        elif len(st["undecoded"]) > UNDECODED:
            with autocast(self.device, self.precision):
                for z in st["undecoded"][:-1]:
                    self.ae.decode_stream(z, st["decoder"])
            del st["undecoded"][:-1]

    def _account(self, tic: float) -> None:
        self.timings["step_s"] += time.perf_counter() - tic
        self.timings["steps"] += 1

    def current_latents(self) -> np.ndarray:
        """The worlds' current latent frames (B, C, h, w) float32, as generated."""
        return self._require_state()["last_latent"][:, 0].float().cpu().numpy().copy()  # not a view of the rollout's state

    @property
    def unknown_words(self) -> list[list[str]]:
        """Per world, the prompt's words the text encoder does not know."""
        return self._require_state()["unknown"]

    # -- internals -----------------------------------------------------------------------------------------
    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            raise RuntimeError("call reset(...) before step(...)")
        return self._state

    def _text(self, prompts: list[str], branches: int) -> TextState:
        tokens, mask, pooled = self.model.encode_text(prompts)
        if self.compiled:  # a few text lengths, not one a prompt: a new prompt does not recompile
            length = text_bucket(tokens.shape[1], self.tokenizer.max_length)
            tokens, mask, pooled = pad_text((tokens, mask, pooled), length)
        if branches == 1:
            state = self.model.dit.text_state(tokens, mask, pooled)
        else:
            text_drop, _ = guidance_drops(len(prompts), self.device)  # the guidance rows of diffusion.sampling
            rep = lambda x: torch.cat([x] * branches)  # noqa: E731
            state = self.model.dit.text_state(rep(tokens), rep(mask), rep(pooled), text_drop)
        # the cross-attention keys and values in the dtype attention takes them in under autocast, once a
        # rollout (the same values autocast would cast them to at every call of every block)
        dtype = compute_dtype(self.precision)
        return dataclasses.replace(state, kv=[(k.to(dtype), v.to(dtype)) for k, v in state.kv])

    def _action_drop(self) -> torch.Tensor | None:
        st = self._require_state()
        return None if st["branches"] == 1 else guidance_drops(st["batch"], self.device)[1]

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, 1, *shape) standard normal, row i from world i's generator."""
        st = self._require_state()
        return torch.stack([torch.randn(1, *shape, generator=g) for g in st["gens"]]).to(self.device)

    def _rep(self, x: torch.Tensor) -> torch.Tensor:
        """x repeated over the guidance branches; x itself without guidance (nothing
        writes to a DiT call's inputs, so no copy is needed)."""
        branches = self._require_state()["branches"]
        return x if branches == 1 else torch.cat([x] * branches)

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, act: torch.Tensor, anchor: torch.Tensor | None) -> torch.Tensor:
        """Guided velocity of the new frame (B, 1, C, h, w) at level t, over the cache
        (of its difference from ``anchor`` (B, 1, C, h, w), if given)."""
        st = self._require_state()
        b = st["batch"]
        tt = torch.full((b * st["branches"], 1), float(t), device=self.device)
        if self.use_cache:
            xs, ts, acts, anchors, anchored, levels = self._rep(x), tt, self._rep(act), None, None, None
            bases = None
            if anchor is not None:
                anchors, levels, bases = self._rep(anchor), torch.full_like(tt, self.context_noise), self._rep(st["last_latent"])
            pending, offset = st["pending"], st["frame"]
            if pending is not None:  # store the finished frame in this same call, before the new one
                noisy, pact, offset = pending
                xs, acts = torch.cat([self._rep(noisy), xs], 1), torch.cat([self._rep(pact), acts], 1)
                ts = torch.cat([torch.full_like(tt, self.context_noise), tt], 1)
                if anchors is not None:
                    anchors = anchors.expand(-1, 2, -1, -1, -1)  # the stored frame is not anchored: what its row holds is not read
                    anchored = torch.tensor([False, True], device=self.device).expand(xs.shape[0], 2)
                    levels = torch.cat([levels, levels], 1)
                    bases = bases.expand(-1, 2, -1, -1, -1)
                st["pending"] = None
            v = self._call_dit(
                xs, ts, acts, st["text"], causal=True, action_drop=self._action_drop(), cache=st["cache"], frame_offset=self._index(offset),
                append=pending is not None, anchor=anchors, anchored=anchored, anchor_t=levels, anchor_base=bases,
            ).float()[:, -1:]
        else:  # recompute the window's frames every time
            past = st["history"]
            xs = torch.cat([p[0] for p in past] + [x], dim=1)
            acts = torch.cat([p[1] for p in past] + [act], dim=1)
            ts = torch.cat([torch.full((b, len(past)), self.context_noise, device=self.device), torch.full((b, 1), float(t), device=self.device)], 1)
            anchors = anchored = bases = None
            if anchor is not None:  # only the new frame is anchored
                anchors = self._rep(torch.cat([anchor.new_zeros(b, xs.shape[1] - 1, *anchor.shape[2:]), anchor], dim=1))
                last = st["last_latent"]
                bases = self._rep(torch.cat([last.new_zeros(b, xs.shape[1] - 1, *last.shape[2:]), last], dim=1))
                anchored = torch.zeros(anchors.shape[:2], dtype=torch.bool, device=self.device)
                anchored[:, -1] = True
            v = self._call_dit(
                self._rep(xs), self._rep(ts), self._rep(acts), st["text"], causal=True, action_drop=self._action_drop(), frame_offset=self._index(st["frame"] - len(past)),
                anchor=anchors, anchored=anchored, anchor_t=None if anchors is None else torch.full(anchored.shape, self.context_noise, device=self.device),
                anchor_base=bases,
            ).float()[:, -1:]
        v = velocity_from(v, self._rep(x).float(), torch.full((v.shape[0], 1), float(t), device=self.device), self.prediction)
        if st["branches"] == 1:
            return v
        return combine_guidance(*v.chunk(st["branches"]), self.sampler)

    def _index(self, frame: int) -> torch.Tensor:
        """A frame index as a () tensor: the cached call's graph is then the same at every frame."""
        return torch.tensor(frame, dtype=torch.long, device=self.device)

    def _call_dit(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        tic = time.perf_counter()
        if not self.compiled:
            out = self._dit(*args, **kwargs)
        else:
            try:
                inductor, dynamo = self._compile_settings
                with inductor, dynamo:
                    out = self._dit(*args, **kwargs)
            except torch._dynamo.exc.FailOnRecompileLimitHit:  # raised as the call began: nothing was done
                limit = max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)
                warnings.warn(
                    f"torch.compile reached Dynamo's recompile limit ({limit} graphs of the DiT in this process: "
                    "many batch sizes or compiled simulators); stepping the eager model",
                    stacklevel=3,
                )
                self._dit, self.compiled = self._eager(), False
                out = self._dit(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as e:  # compiling failed (no C++ compiler, ...): before any work was done
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); stepping the eager model", stacklevel=3)
                self._dit, self.compiled = self._eager(), False
                out = self._dit(*args, **kwargs)
        self.timings["dit_s"] += time.perf_counter() - tic
        return out

    def _eager(self) -> Any:
        """The DiT stepped eagerly: in bf16, its twin whose linear and convolution weights are
        cast to bf16 once (and again when they change, checked at each reset and step) rather
        than by autocast at every call, the linear layers' weights also prepacked for oneDNN
        on a CPU (:class:`~worldsim.runtime.CastWeights`; the same results, bit for bit)."""
        if self.precision != "bf16":
            return self.model.dit
        self._cast = CastWeights(self.model.dit, compute_dtype(self.precision))
        return self._cast.twin

    def _follow_weights(self) -> None:
        """Bring the bf16 twin up to date with the model's weights (a cheap check when unchanged)."""
        if self._cast is not None:
            self._cast.current()

    def _commit(self, latents: torch.Tensor, actions: torch.Tensor) -> None:
        """Put finished frames (B, K, C, h, w) into the cache at the context noise level."""
        st = self._require_state()
        b, k = latents.shape[:2]
        noise = torch.cat([self._noise(latents.shape[2:]) for _ in range(k)], dim=1)
        noisy = add_noise(latents, torch.full((b, k), self.context_noise, device=self.device), noise)
        if self.use_cache:  # one frame a call (each sees the frames before it and itself); the last is left to the next call
            tt = torch.full((b * st["branches"], 1), self.context_noise, device=self.device)
            frames = [(noisy[:, i : i + 1], actions[:, i : i + 1], st["frame"] + i) for i in range(k)]
            if st["pending"] is not None:
                frames.insert(0, st["pending"])
            for frame, act, index in frames[:-1]:
                self._call_dit(
                    self._rep(frame), tt, self._rep(act), st["text"], causal=True, action_drop=self._action_drop(),
                    cache=st["cache"], frame_offset=self._index(index), append=True,
                )
            st["pending"] = frames[-1]
        else:
            st["history"] = (st["history"] + [(noisy[:, i : i + 1], actions[:, i : i + 1]) for i in range(k)])[-self.window :]
        st["recent"] = ([noisy[:, i : i + 1] for i in reversed(range(k))] + st["recent"])[: self.config.dit.anchor_frames]
        st["last_latent"] = latents[:, -1:]
        st["frame"] += k
