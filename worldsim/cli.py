"""What every command line shares: refusing an output path that is a file before Hydra
makes it, the threads setting, and ending a user's mistake with its message alone."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException

from worldsim.config import config_dir
from worldsim.runtime import choose_threads


def refuse_file_outputs(argv: list[str], keys: tuple[str, ...] = ("out",)) -> None:
    """Exit with a clear message when ``out=`` names an existing file: Hydra makes the
    run folder before any worldsim code runs, and would fail with a raw FileExistsError."""
    for a in argv:
        key, _, value = a.partition("=")
        if key.lstrip("+") in keys and value and Path(value).exists() and not Path(value).is_dir():
            sys.exit(f"error: {key}={value} is a file, not a folder; pass a folder to write into (it is made if missing)")


def user_message(e: BaseException) -> str:
    """What a user is told of a mistake: its message. One a DataLoader worker raised (an
    unreadable episode, say) comes back with the worker's traceback in its text; only the
    worker's own message is kept."""
    msg = str(e)
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]  # "module.ErrorType: the message"
        msg = last.split(": ", 1)[1] if ": " in last else last
    return msg


def entry_point(config_name: str, *, errors: tuple[type[BaseException], ...] = ()) -> Callable[[Callable[[Any], Any]], Callable[[], None]]:
    """Make a Hydra task function (conf/CONFIG_NAME.yaml) a command line: a user's
    mistake (a ValueError of worldsim's, or one of ``errors``; also when Hydra raises it
    while instantiating a config), or a model whose frames are not finite
    (FloatingPointError), ends the program with ``error: <message>`` and status 1, the
    message first, without a traceback."""
    caught = (ValueError, FloatingPointError, *errors)  # FloatingPointError: a model whose frames are not finite, named

    def wrap(task: Callable[[Any], Any]) -> Callable[[], None]:
        @functools.wraps(task)
        def guarded(cfg: Any) -> Any:
            try:
                if "threads" in cfg:
                    choose_threads(cfg.threads)
                return task(cfg)
            except InstantiationException as e:
                cause = e.__cause__
                if not isinstance(cause, caught):
                    raise
                sys.exit(f"error: {user_message(cause)}")
            except caught as e:
                sys.exit(f"error: {user_message(e)}")

        hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(guarded)

        @functools.wraps(task)
        def main() -> None:
            refuse_file_outputs(sys.argv[1:])
            hydra_main()

        return main

    return wrap
