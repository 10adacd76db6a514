"""The README's GIF from a demo run: ``python tools/readme_gif.py demo/demo.mp4 docs/demo.gif``.

Reads the demo video (a title row, then truth | learned | difference, one row of
``--row-px`` per episode), keeps the title and the rows ``--keep`` lists, halves it (every other pixel: the tiles are nearest-upscaled, so
nothing blurs) and writes a looping GIF, refusing one over ``--max-mb`` (the README's
GIF is the one committed binary besides the reference weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("gif")
    p.add_argument("--keep", default="0,2,4,6", help="episode rows kept, from 0 at the top (the demo: two a scene)")
    p.add_argument("--row-px", type=int, default=256, help="height of one episode row in the video (worldsim.video.TILE_PX)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--max-mb", type=float, default=2.0)
    a = p.parse_args()
    frames = [np.asarray(f) for f in imageio.mimread(a.video, memtest=False)]
    if not frames:
        sys.exit(f"error: {a.video} holds no frames")
    h = frames[0].shape[0]
    rows = h // a.row_px
    head = h - rows * a.row_px
    keep = [int(k) for k in a.keep.split(",")]
    if not keep or max(keep) >= rows or min(keep) < 0:
        sys.exit(f"error: --keep {a.keep} names rows the video lacks (it has {rows} rows of {a.row_px} px)")
    spans = [slice(0, head)] + [slice(head + k * a.row_px, head + (k + 1) * a.row_px) for k in keep]
    small = [np.concatenate([f[s] for s in spans])[::2, ::2] for f in frames]
    Path(a.gif).parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(a.gif, small, duration=1000 / a.fps, loop=0)
    mb = Path(a.gif).stat().st_size / 2**20
    print(f"{a.gif}: {len(small)} frames, {small[0].shape[1]}x{small[0].shape[0]}, {mb:.2f} MB")
    if mb > a.max_mb:
        Path(a.gif).unlink()
        sys.exit(f"error: the GIF would be {mb:.2f} MB, over {a.max_mb}; --keep fewer rows")


if __name__ == "__main__":
    main()
