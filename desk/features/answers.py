"""Answer templates (the knowledge base): a YAML file of named answers agents send with ``/t``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from desk.config.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer template: a title and its text per language."""

    name: str
    title: str
    texts: dict[str, str]


class AnswerBook:
    """Loads ``answers.yaml`` (name → title, ru, en) and renders answers in a sandbox."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._env = SandboxedEnvironment(autoescape=False)
        self._answers: dict[str, Answer] = {}
        self.problem = ""
        self.reload()

    def reload(self) -> None:
        """Read the file again; a broken file leaves the book empty and says why."""
        self._answers, self.problem = {}, ""
        if not self.path.exists():
            return
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            self.problem = f"{self.path}: {exc}"
            log.error("answer templates not loaded", extra={"reason": self.problem})
            return
        if not isinstance(data, dict):
            self.problem = f"{self.path}: expected a mapping of name → {{title, ru, en}}"
            return
        for name, entry in data.items():
            if not isinstance(entry, dict):
                continue
            texts = {k: str(v) for k, v in entry.items() if k in ("ru", "en") and v}
            if texts:
                self._answers[str(name).lower()] = Answer(
                    str(name).lower(), str(entry.get("title", name)), texts
                )

    def names(self) -> list[tuple[str, str]]:
        """(name, title) of every answer, sorted."""
        return sorted((a.name, a.title) for a in self._answers.values())

    def render(self, name: str, lang: str, **values: Any) -> str:
        """The answer ``name`` in ``lang`` (or the other language), variables filled in."""
        answer = self._answers.get(name.strip().lower())
        if answer is None:
            raise KeyError(name)
        source = answer.texts.get(lang) or next(iter(answer.texts.values()))
        try:
            return self._env.from_string(source).render(**values).strip()
        except TemplateError as exc:
            raise InvalidInput(f"answer template '{name}' is broken: {exc}") from exc
