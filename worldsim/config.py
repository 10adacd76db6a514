"""Where the Hydra configs live, loading a config group, and typed configs from plain values."""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

MAX_NAME_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems


def path_safe(text: str) -> str:
    """One folder name from a string that may hold paths (``/`` as ``%2F``): a sweep's run
    folder is named by its overrides, and ``data=/a/b`` must not nest folders in it. A name
    too long for a file system keeps its first 230 bytes and ends in a hash of the whole,
    so the same overrides still name the same folder (a re-launched sweep resumes)."""
    name = str(text).replace("/", "%2F")
    raw = name.encode()
    if len(raw) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return f"{raw[:230].decode(errors='ignore')}...{digest}"


# conf/train.yaml's hydra.sweep.subdir: ${path_safe:${hydra.job.override_dirname}}
OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)


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
    """``kind(**values)`` for a config dataclass, with worldsim's errors: unknown keys,
    and values of the wrong kind for a field typed int, float, bool or str (or one of
    those or None), are refused naming ``key.field``."""
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
    hints = typing.get_type_hints(kind)
    values = {k: _coerce(v, hints.get(k), f"{key}.{k}") for k, v in values.items()}
    try:
        return kind(**values)
    except TypeError as e:
        raise ValueError(f"{key}: {e}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """A value checked against a simple field type (int, float, bool, str, or X | None)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return value
        hint = rest[0]
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
    elif hint is int:
        return whole(value, key)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    elif hint is str and not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def whole(value: Any, key: str, *, minimum: int | None = None) -> int:
    """``value`` as an int, or ConfigGroupError-style ValueError naming ``key``
    (``episodes=lots`` says so, instead of ``invalid literal for int()``)."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {n}")
    return n


ENTRY_KEYS = ("threads",)  # settings of the process (entry_point applies them), not of the job


def job_config(cfg: Any) -> dict[str, Any]:
    """A composed config as a plain dict, without the process settings of ENTRY_KEYS."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return {k: v for k, v in plain.items() if k not in ENTRY_KEYS}
