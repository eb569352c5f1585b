"""Size presets as files: `configs/model/<name>.yaml` (LM) and `configs/codec/<name>.yaml` (codec).

One mechanism for both: a config names a preset, the rule declares the file as an input (so editing it reruns
the stage), and the DAG validates its content when the config is built, before any job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml

from stages.config.base import ConfigError, from_dict

REPO = Path(__file__).resolve().parents[2]
PRESET_FOLDERS = {"model": REPO / "configs" / "model", "codec": REPO / "configs" / "codec"}
PRESET_NAME = r"^[A-Za-z0-9_.-]+$"

T = TypeVar("T")


def preset_path(kind: str, name: str) -> Path:
    return PRESET_FOLDERS[kind] / f"{name}.yaml"


def read_preset(kind: str, name: str, where: str) -> dict:
    """The preset's keys as a dict; a missing preset names the ones that exist."""
    path = preset_path(kind, name)
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_FOLDERS[kind].glob("*.yaml"))
        raise ConfigError(f"{where}: no preset {name!r} in {PRESET_FOLDERS[kind]}; known: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {kind} keys, got {type(data).__name__}")
    return data


def load_yaml_as(cls: type[T], path: str | Path, overrides: dict | None = None, where: str | None = None) -> T:
    """A YAML file of `cls`'s keys (a preset, or a model folder's copy of one) as a validated `cls`."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return from_dict(cls, {**data, **(overrides or {})}, where or str(path))
