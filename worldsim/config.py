"""Where the Hydra configs live, and the small helpers every entry point shares."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """Absolute path of the Hydra config folder.

    An installed package carries the configs inside it (``worldsim/conf``, copied
    from the repository's top-level ``conf/`` by ``pip install .``); a source
    checkout or an editable install reads ``conf/`` next to the package.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "generate.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"worldsim's Hydra configs were not found in {here / 'conf'} or {here.parent / 'conf'}; "
        "reinstall the package (pip install .) or run from a source checkout"
    )
