"""Keeping third-party chatter off a worldsim console."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stdout(fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for a with-block: what C extensions
    print (PyBullet's build banner, on stderr) never reaches the console."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdio()  # what the C library buffered goes to /dev/null too, not to the console at exit
        for fd, keep in zip(fds, saved):
            os.dup2(keep, fd)
            os.close(keep)
        os.close(devnull)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not on Linux or macOS)
        pass
