"""Typed configuration: frozen dataclasses are the one source of every key, default and description.

    python -m stages.config schema > workflow/schemas/config.schema.json   # regenerate the JSON schema

Each config group is a frozen dataclass whose fields are declared with `setting(default, "why")`. From
these we derive the JSON schema Snakemake validates against (so the schema can never drift from the code:
a test compares the committed file with a fresh one) and we build typed objects from plain dicts,
rejecting unknown keys and wrong types with the dotted name of the offending key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


def setting(default: Any, doc: str, **constraints: Any) -> Any:
    """A config field: its default, why that default, and extra JSON-schema constraints (minimum, ...)."""
    if isinstance(default, (list, tuple)):
        items = tuple(default)
        return dataclasses.field(default_factory=lambda: items, metadata={"doc": doc, "constraints": constraints})
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=type(default), metadata={"doc": doc, "constraints": constraints})
    return dataclasses.field(default=default, metadata={"doc": doc, "constraints": constraints})


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(tp: Any, value: Any, where: str) -> Any:
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: must not be null")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, where)
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_type,) = get_args(tp)[:1]
        return tuple(_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def _check_constraints(value: Any, constraints: dict, where: str) -> None:
    if value is None:
        return
    if "minimum" in constraints and value < constraints["minimum"]:
        raise ConfigError(f"{where}: {value!r} is below the minimum {constraints['minimum']}")
    if "maximum" in constraints and value > constraints["maximum"]:
        raise ConfigError(f"{where}: {value!r} is above the maximum {constraints['maximum']}")
    if "exclusiveMinimum" in constraints and value <= constraints["exclusiveMinimum"]:
        raise ConfigError(f"{where}: {value!r} must be greater than {constraints['exclusiveMinimum']}")
    if "pattern" in constraints and not re.search(constraints["pattern"], value):
        raise ConfigError(f"{where}: {value!r} does not match {constraints['pattern']}")


def from_dict(cls: type[T], data: dict | None, where: str = "config") -> T:
    """Build `cls` from a plain dict: defaults fill gaps, unknown keys and wrong types raise ConfigError."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name in data:
            values[name] = _convert(hints[name], data[name], key)
            _check_constraints(values[name], f.metadata.get("constraints", {}), key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain, JSON-friendly dict of a config object (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _type_schema(tp: Any) -> dict:
    optional, tp = _is_optional(tp)
    if dataclasses.is_dataclass(tp):
        schema = json_schema(tp)
    elif get_origin(tp) is Literal:
        schema = {"enum": list(get_args(tp))}
    elif get_origin(tp) in (list, tuple):
        schema = {"type": "array", "items": _type_schema(get_args(tp)[0])}
    elif get_origin(tp) is dict:
        schema = {"type": "object"}
    else:
        schema = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[tp]}
    if optional:
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def json_schema(cls: type) -> dict:
    """JSON schema (draft 2020-12) of a config dataclass: descriptions, defaults, no unknown keys."""
    hints = get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        prop.update(f.metadata.get("constraints", {}))
        prop["description"] = f.metadata.get("doc", "")
        if f.default is not dataclasses.MISSING:
            prop["default"] = to_dict(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            prop["default"] = to_dict(f.default_factory())
        properties[f.name] = prop
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema
