"""Answer templates (the knowledge base): a YAML file of named answers agents send with ``/t``.

The desk ships a starter set (``templates/answers.yaml``); a company replaces it with its own
file (``answers_file``). The file is checked whole when the service starts: a broken one stops
the start with ``file:key: reason`` lines, as a broken config does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from desk.config.config_errors import ConfigError, read_yaml
from desk.config.errors import InvalidInput
from desk.config.settings import Settings
from desk.config.texts import LANGUAGES, TEMPLATES_DIR, language_of

log = logging.getLogger(__name__)

SHIPPED_ANSWERS = TEMPLATES_DIR / "answers.yaml"
LOCAL_ANSWERS = Path("answers.yaml")  # in the directory the desk runs in: used unnamed
# What a template may use: the customer's name, the appeal number, the agent, the company.
PLACEHOLDERS = ("customer", "number", "agent", "company")
NAME_BYTES = 32  # the name rides in a button's callback data (64 bytes in all)
_ENTRY_KEYS = ("title", *LANGUAGES)


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer template: its title and its text per language."""

    name: str
    titles: dict[str, str]
    texts: dict[str, str]

    def title(self, lang: str) -> str:
        """The title in ``lang``, else in the other language, else the name."""
        return self.titles.get(lang) or next(iter(self.titles.values()), self.name)


def answers_path(settings: Settings) -> Path:
    """The answer file in force: the one the config names, else ``answers.yaml`` where the
    desk runs, else the starter set shipped with the desk."""
    if settings.answers_file:
        return Path(settings.answers_file)
    return LOCAL_ANSWERS if LOCAL_ANSWERS.is_file() else SHIPPED_ANSWERS


class AnswerBook:
    """The answers of one file, checked at load, rendered in a sandbox."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._env = SandboxedEnvironment(autoescape=False)
        self._answers = _read(path, self._env)

    @classmethod
    def of(cls, settings: Settings) -> AnswerBook:
        """The book of the file the settings choose; a broken file raises ``ConfigError``."""
        return cls(answers_path(settings))

    def all(self) -> list[Answer]:
        """Every answer, in the file's order."""
        return list(self._answers.values())

    def get(self, name: str) -> Answer | None:
        """The answer ``name`` (any case), or None."""
        return self._answers.get(name.strip().lower())

    def render(self, name: str, lang: str, **values: Any) -> str:
        """The answer ``name`` for a customer speaking ``lang`` (their language's text, else
        the other), placeholders filled; an unknown name raises ``KeyError``."""
        answer = self.get(name)
        if answer is None:
            raise KeyError(name)
        wanted = language_of(lang)
        source = answer.texts.get(wanted) or next(iter(answer.texts.values()))
        try:
            return self._env.from_string(source).render(**values).strip()
        except TemplateError as exc:  # checked at load; a sandbox refusal still lands here
            raise InvalidInput(f"answer template '{name}' is broken: {exc}") from exc


def _read(path: Path, env: SandboxedEnvironment) -> dict[str, Answer]:
    """Every answer of the file; all its problems at once as ``ConfigError``."""
    data = read_yaml(path)
    problems: list[str] = []
    answers: dict[str, Answer] = {}
    for raw_name, entry in data.items():
        name = str(raw_name).strip().lower()
        where = f"{path}:{raw_name}"
        problem = _name_problem(name)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        if name in answers:
            problems.append(f"{where}: duplicate name '{name}' (names ignore case)")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with title, ru and en")
            continue
        found = [f"{where}.{key}: unknown key" for key in entry if key not in _ENTRY_KEYS]
        titles, title_problems = _titles(entry.get("title"), where)
        found += title_problems
        texts: dict[str, str] = {}
        for lang in LANGUAGES:
            value = entry.get(lang)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                found.append(f"{where}.{lang}: must be a non-empty text")
                continue
            found += [f"{where}.{lang}: {p}" for p in _template_problems(value, env)]
            texts[lang] = value
        if all(entry.get(lang) is None for lang in LANGUAGES):
            found.append(f"{where}: needs a text in ru or en (or both)")
        problems += found
        if not found:
            answers[name] = Answer(name, titles or {LANGUAGES[0]: name}, texts)
    if problems:
        raise ConfigError(problems)
    log.info("answer templates loaded", extra={"path": str(path), "answers": len(answers)})
    return answers


def _name_problem(name: str) -> str:
    if not name:
        return "a name is required"
    if len(name.encode()) > NAME_BYTES:
        return f"the name is too long (at most {NAME_BYTES} bytes, it is typed after /t)"
    if not all(c.isalnum() or c in "-_" for c in name):
        return "a name is letters, digits, '-' and '_' only (it is typed after /t)"
    return ""


def _titles(value: object, where: str) -> tuple[dict[str, str], list[str]]:
    """A title for both languages, or one per language."""
    if value is None:
        return {}, []
    if isinstance(value, str) and value.strip():
        return {lang: value.strip() for lang in LANGUAGES}, []
    if isinstance(value, dict):
        problems = [f"{where}.title.{k}: unknown language" for k in value if k not in LANGUAGES]
        titles = {
            str(k): str(v).strip() for k, v in value.items() if k in LANGUAGES and str(v).strip()
        }
        if not titles and not problems:
            problems.append(f"{where}.title: needs a text in ru or en")
        return titles, problems
    return {}, [f"{where}.title: must be a text, or a text per language ({{ru: …, en: …}})"]


def _template_problems(source: str, env: SandboxedEnvironment) -> list[str]:
    """Why a template text cannot be rendered: bad syntax, or an unknown placeholder."""
    try:
        tree = env.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        return [f"template syntax error{f' (line {line})' if line else ''}: {exc}"]
    unknown = sorted(meta.find_undeclared_variables(tree) - set(PLACEHOLDERS))
    if unknown:
        known = ", ".join(PLACEHOLDERS)
        return [f"unknown placeholder {', '.join(unknown)} (known: {known})"]
    if list(meta.find_referenced_templates(tree)):
        return ["a template may not include other templates"]
    return []
