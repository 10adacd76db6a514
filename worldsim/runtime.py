"""Where and how computation runs: device, precision, autocast, seeded generators,
threads and the FLOP counter. Training, the simulator, sampling and evaluation all take
these from here."""

from __future__ import annotations

import copy
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


class RuntimeConfigError(ValueError):
    """A device, precision or thread setting that cannot work here; the message says why."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it
    PyTorch emulates bf16 matrix products at a quarter of the fp32 speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux: ``/proc/self/statm``), or None where
    it cannot be read. Not the peak (``ru_maxrss``): a peak set earlier in the process
    hides any growth below it, so only the current size shows whether a loop leaks."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU if there is one), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise RuntimeConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that have it and on CPUs with native bf16, else fp32."""
    if name not in ("auto", "bf16", "fp32"):
        raise RuntimeConfigError(f"precision must be auto, bf16 or fp32, got {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context of a precision (bf16 autocast, or a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype activations (a linear layer's outputs: attention keys) have under ``autocast(device, precision)``."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


# oneDNN's linear on a prepacked weight: only in builds with oneDNN (None without)
_LINEAR_POINTWISE: Any = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


@functools.cache
def _packing_works(dtype: torch.dtype) -> bool:
    """Whether oneDNN's linear on a prepacked weight (the kernel Inductor calls for frozen
    CPU weights, ``torch.ops.mkldnn._linear_pointwise``: private, so checked) runs here in
    ``dtype`` and gives ``F.linear``'s result bit for bit, on shapes like a step's (one
    row, a frame's 64, a batch's; a product's inner width of 96 and of 384)."""
    try:
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):  # whatever region it is first asked in
            for rows, inner, out in ((1, 96, 576), (64, 384, 96), (2 * 576, 96, 288), (3, 40, 24)):
                x, w, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((rows, inner), (out, inner), (out,)))
                packed = torch.ops.mkldnn._reorder_linear_weight(w)
                if not torch.equal(_LINEAR_POINTWISE(x, packed, b, "none", [None], ""), torch.nn.functional.linear(x, w, b)):
                    return False
        return True
    except Exception:  # no oneDNN in this build, the op changed or refuses the dtype: F.linear then
        return False


class _PackedLinear(torch.nn.Linear):
    """A twin's linear layer with its weight also held prepacked in oneDNN's blocked layout
    (:class:`CastWeights` sets ``packed``): bit for bit ``F.linear`` on the weight, without
    oneDNN reordering the weight at every call (1.2-1.7x on a step's products of 64 rows
    in bf16; paired, a step 1.00-1.07x). The plain layer instead without a packed weight,
    with autograd recording, for an input of more than two dimensions that is not
    contiguous (``F.linear`` then multiplies and adds the bias apart, which rounds
    differently from the fused bias) and for an input of another dtype outside autocast
    (where ``F.linear`` refuses it)."""

    packed: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.packed
        if w is None or (x.requires_grad and torch.is_grad_enabled()) or (x.dim() > 2 and not x.is_contiguous()):
            return super().forward(x)
        if x.dtype != w.dtype:
            if not torch.is_autocast_enabled("cpu"):
                return super().forward(x)
            x = x.to(w.dtype)  # as autocast casts it for F.linear (the op is not on its lists)
        return _LINEAR_POINTWISE(x, w, self.bias, "none", [None], "")


class CastWeights:
    """A module's twin for eager inference under lower-precision autocast, with the
    weights autocast would cast at every call cast once: the linear and convolution
    layers' weights and biases are held in ``dtype``; every other parameter and buffer
    (norms, embeddings, learned vectors) is the module's own, shared, never copied.

    Autocast keeps a weight's cast for the rest of its autocast region, except under
    ``torch.inference_mode``, where it casts every weight at every call (a small model's
    step: about a hundred casts a call). The twin gives the same results bit for bit: an
    autocast cast of a value is that value already in ``dtype``. Call it only under
    autocast to ``dtype`` (without, its weights meet fp32 inputs and PyTorch refuses).

    ``current()`` returns the twin after following the module: it casts anew a weight
    changed in place (an optimizer step, ``load_state_dict``, a change under ``no_grad``),
    given new data (``.data =``, a move to another device), replaced, removed or added
    (a bias), and shares anew a parameter or buffer of the module replaced. One change
    it cannot see: an edit in place through ``.data`` (``p.data.mul_(...)``), which
    PyTorch does not count; ``current(force=True)`` casts every weight anew. A parameter
    made under inference mode has no version counter: it is cast at every call.

    ``pack`` (the default): on a CPU in bf16, the linear layers' cast weights are also
    held prepacked for oneDNN (:class:`_PackedLinear`), where that runs and gives
    ``F.linear``'s results bit for bit (checked once a process, on four shapes of a
    step); packed anew with each cast. A twin with packed weights cannot be deep-copied
    or pickled (oneDNN's layout has no storage): make another from the module."""

    LAYERS = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)  # autocast's lower-precision ops with weights

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype, pack: bool = True):
        self.dtype = dtype
        # bf16 only: in fp32, F.linear's products (MKL) are faster than oneDNN's at a step's shapes, and round differently
        self.pack = pack and dtype == torch.bfloat16 and _packing_works(dtype)
        # every tensor of the module shared by the copy (the memo maps it to itself), then the layers' weights cast
        memo: dict[int, Any] = {id(t): t for t in [*module.parameters(), *module.buffers()]}
        self.twin = copy.deepcopy(module, memo)
        self._cast: list[tuple[dict[str, Any], dict[str, Any], str]] = []  # (module's _parameters, twin's, name): held in dtype
        self._shared: list[tuple[dict[str, Any], dict[str, Any], str]] = []  # (module's _parameters or _buffers, twin's, name)
        self._packs: list[_PackedLinear | None] = []  # per cast entry: the twin's layer whose packed weight it is
        for src, dst in zip(module.modules(), self.twin.modules()):
            if self.pack and type(dst) is torch.nn.Linear:  # exactly Linear: a subclass may not call forward (MultiheadAttention's)
                dst.__class__ = _PackedLinear
            for name in src._parameters:  # None entries too: a bias added later is followed
                (self._cast if isinstance(src, self.LAYERS) else self._shared).append((src._parameters, dst._parameters, name))
                if isinstance(src, self.LAYERS):
                    self._packs.append(dst if isinstance(dst, _PackedLinear) and name == "weight" else None)
            for name in src._buffers:
                self._shared.append((src._buffers, dst._buffers, name))
        self._seen: list[tuple[Any, int, int] | None] = [None] * len(self._cast)  # what each was cast from: _state()
        self.current()

    @staticmethod
    def _state(p: torch.Tensor | None) -> tuple[Any, int, int]:
        """The parameter itself (held, so that a replacement is never taken for it), its
        version (bumped by every change in place; -1 for a tensor made under inference
        mode, which has none) and where its data lies."""
        return (None, 0, 0) if p is None else (p, -1 if p.is_inference() else p._version, p.data_ptr())

    @torch.no_grad()
    def current(self, force: bool = False) -> torch.nn.Module:
        for i, (src, dst, name) in enumerate(self._cast):
            p = src[name]
            state, seen = self._state(p), self._seen[i]
            if force or seen is None or state[0] is not seen[0] or state[1:] != seen[1:] or state[1] < 0:
                floating = p is not None and p.is_floating_point()
                dst[name] = torch.nn.Parameter(p.detach().to(self.dtype), requires_grad=False) if floating else p
                self._seen[i] = state
                layer = self._packs[i]
                if layer is not None:
                    w = dst[name]
                    layer.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach()) if floating and w.device.type == "cpu" and w.dim() == 2 else None
        for src, dst, name in self._shared:
            if src[name] is not dst[name]:
                dst[name] = src[name]
        return self.twin


def _cpu_attention_flops(query, key, value, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out, query, key, value, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _packed_linear_flops(x: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * int(np.prod(x)) * int(out_shape[-1])  # x (..., in) into out_shape (..., out), either overload


# PyTorch's counter knows the CUDA attention kernels but not the CPU one, so on a CPU the
# attention of every model counted zero (half a training step of the reference DiT).
_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}
# nor oneDNN's linear on a prepacked weight (_PackedLinear: the simulator's eager bf16 steps)
_PACKED_LINEAR = {} if _LINEAR_POINTWISE is None else {_LINEAR_POINTWISE: _packed_linear_flops}


def flop_counter(*, cpu_attention: bool = True) -> FlopCounterMode:
    """``torch.utils.flop_counter.FlopCounterMode`` that also counts the CPU attention
    kernel (dense: every query against every key, masked or not, as the kernel computes
    it; the formula PyTorch uses for its CUDA kernels), so a model counts the same FLOPs
    on a CPU as on a GPU; and oneDNN's linear on a prepacked weight, as ``F.linear``.
    ``cpu_attention=False`` counts attention as worldsim did before (runs started then
    resume counting that way, so their budgets keep their meaning)."""
    return FlopCounterMode(display=False, custom_mapping=(_CPU_ATTENTION if cpu_attention else {}) | _PACKED_LINEAR)


def seeded_generator(*key: int) -> torch.Generator:
    """A torch generator seeded from a tuple of integers (e.g. seed, step, rank)."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return g


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: leave PyTorch's default); returns the count."""
    if threads is not None:
        if int(threads) < 1:
            raise RuntimeConfigError(f"threads must be a positive number of threads (or null for the default), got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _machine_busy_seconds() -> float:
    """CPU seconds the CPUs this process may use have spent busy since boot
    (``/proc/stat``, their per-CPU lines: on a machine shared by CPU sets, the others'
    CPUs are not ours to count)."""
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except AttributeError:
        mine = None
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or (mine is not None and name not in mine):
                continue
            ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def busy_cpus(interval: float = 0.2) -> float:
    """How many CPUs other processes keep busy now: the machine's CPU time over
    ``interval`` seconds (``/proc/stat``) less this process's own. Where there is no
    ``/proc/stat``, the 1-minute load average, which lags: it still counts a job that
    ended a minute ago, and not yet one that just started."""

    try:
        b0, own0, t0 = _machine_busy_seconds(), time.process_time(), time.perf_counter()
        time.sleep(interval)
        b1, own1, t1 = _machine_busy_seconds(), time.process_time(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(0.0, ((b1 - b0) - (own1 - own0)) / max(t1 - t0, 1e-6))


def choose_threads(requested: int | None) -> int:
    """Set torch's threads: ``requested``, or by default (None) the CPUs this process
    may use less those other processes keep busy (:func:`busy_cpus`, measured over a
    fifth of a second), at least one, so that a shared machine is not oversubscribed
    (two jobs of 2 threads on 2 cores ran 3-7x slower than one each). When the machine
    is busy this says so, once, on stderr. The thread count can change the last bits of
    float results: pass ``threads=N`` for bit-identical reruns whatever the load."""
    if requested is not None:
        return set_threads(requested)
    cpus = min(cpu_count(), torch.get_num_threads()) or 1
    used = busy_cpus()
    busy = min(cpus - 1, int(used + 0.5))
    if busy > 0:
        print(f"worldsim: this machine is busy (other processes use {used:.1f} of {cpu_count()} CPUs): running on {cpus - busy} of {cpus} "
              "threads; threads=N chooses", file=sys.stderr)
    return set_threads(cpus - busy)
