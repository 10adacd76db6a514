"""Export a DiT run for use: ``python -m worldsim.export RUN OUT.safetensors [--dtype float16] [--sampler-steps N]``.

Writes the weights a user needs (EMA where the run kept them, the text encoder and
the frozen autoencoder), in half precision by default, with the run's config, its
training config, FLOPs and wall time in the file's metadata: what
``worldsim/assets/reference.safetensors`` is, and what every ``checkpoint=`` accepts.
An exported file can be exported again, e.g. with ``--sampler-steps N`` to change the
denoising steps its users get by default (a choice made after training: the weights
stay as they are, and the file records the change as ``revised``). ``--dtype`` is the
written precision whatever the input's (float16 unless told).
"""

from __future__ import annotations

import argparse
import sys

import torch

from worldsim.checkpoint import CheckpointError, export_safetensors


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m worldsim.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a DiT run directory or checkpoint file")
    p.add_argument("out", help="the .safetensors file to write")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--sampler-steps", type=int, default=None,
                   help="the denoising steps a simulator step takes by default (flow.sampler_steps); the file records the trained value beside it")
    a = p.parse_args(argv)
    if not a.out.endswith(".safetensors"):
        sys.exit("error: the output must be a .safetensors file")
    try:
        out = export_safetensors(a.run, a.out, dtype=getattr(torch, a.dtype), sampler_steps=a.sampler_steps)
    except (CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
