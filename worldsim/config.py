"""Where the Hydra configs live, and the small helpers every entry point shares."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


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


class ConfigGroupError(ValueError):
    """A config group member that does not exist; the message lists the valid names."""


def group_names(group: str) -> list[str]:
    """The members of a config group (conf/GROUP/*.yaml), sorted."""
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def load_group(group: str, name: str, *, instantiate: bool = True) -> Any:
    """conf/GROUP/NAME.yaml: instantiated (a scene or engine config, through Hydra's
    ``_target_``) or, with ``instantiate=False``, as a plain dict (a suite)."""
    import hydra
    from omegaconf import OmegaConf

    path = Path(config_dir()) / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigGroupError(f"unknown {group} {name!r}; valid: {', '.join(group_names(group))}")
    conf = OmegaConf.load(path)
    return hydra.utils.instantiate(conf, _convert_="all") if instantiate else OmegaConf.to_container(conf, resolve=True)


def typed(kind: type, values: Any, key: str) -> Any:
    """``kind(**values)`` with worldsim's error for unknown or bad keys (naming ``key``)."""
    if isinstance(values, kind):
        return values
    if values is None:
        return kind()
    if not isinstance(values, dict):
        raise ValueError(f"{key} must be a mapping of settings, got {values!r}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown keys {[f'{key}.{k}' for k in unknown]}; valid: {sorted(known)}")
    try:
        return kind(**values)
    except TypeError as e:
        raise ValueError(f"{key}: {e}") from None
