"""Turning a broken config into ``file:key: reason`` lines, never a traceback."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from desk.config.errors import DeskError

ENV_PREFIX = "DESK_"


class ConfigError(DeskError):
    """The settings cannot be used; ``problems`` holds one ``source:key: reason`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Loader(yaml.SafeLoader):
    """YAML with the booleans of YAML 1.2: only true/false. YAML 1.1 also reads on/off/yes/no
    as booleans, which would turn an automation rule's ``on:`` key into ``true``."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


def load_yaml(text: str) -> Any:
    """Parse YAML text the way every config file of the desk is read."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read the YAML config file; a missing file, bad syntax or a non-mapping is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys, not a list or text"])
    return data


def validation_problems(exc: ValidationError, path: Path | None) -> list[str]:
    """One ``source:key: reason`` line per problem of a pydantic ValidationError."""
    source = str(path) if path is not None else "settings"
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        message = _reason(error)
        if not loc and error["type"] == "value_error":
            # cross-reference checks report several "key: reason" lines at once
            problems += [f"{source}:{line}" for line in message.splitlines()]
            continue
        key = ".".join(loc)
        env_name = _env_name(loc)
        if env_name is not None:
            problems.append(f"{env_name}: {message}")
        else:
            problems.append(f"{source}:{key}: {message}")
    return problems


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _env_name(loc: list[str]) -> str | None:
    """The environment variable that set this key (or a parent of it), if one did."""
    for end in range(len(loc), 0, -1):
        name = ENV_PREFIX + "__".join(loc[:end]).upper()
        if name in os.environ:
            return name
    return None
