"""Everything said to customers and staff, rendered from ``templates/`` (ru first, en too)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

import templates

LANGUAGES = ("ru", "en")
TEMPLATES_DIR = Path(templates.__file__).parent


def language_of(code: str | None) -> str:
    """The template language for a customer's language code: ru, else en."""
    return "ru" if not code or code.lower().startswith("ru") else "en"


class Texts:
    """Renders templates and looks up short strings, per language."""

    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(root),
            autoescape=jinja2.select_autoescape(["html.j2"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            enable_async=False,
        )
        self._root = root

    def render(self, template: str, lang: str, /, **context: Any) -> str:
        """Render ``<lang>/<name>`` (e.g. ``web/status.html.j2``) with ``lang`` in the context."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        return self._env.get_template(f"{lang}/{template}").render(lang=lang, **context)

    def exists(self, template: str, lang: str) -> bool:
        """Whether ``<lang>/<template>`` is there (optional variants of a template)."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        return (self._root / lang / template).is_file()

    def string(self, key: str, lang: str, **values: Any) -> str:
        """A short UI string from ``<lang>/strings.yaml``, with ``{placeholders}`` filled."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        text = _strings(self._root, lang)[key]
        return text.format(**values) if values else text

    def channel(self, value: str, lang: str) -> str:
        """A channel's name for people (``channel.<value>``: «телефон», «визит в офис»), or the
        value itself for a channel without one."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        return _strings(self._root, lang).get(f"channel.{value}", value)

    def duration(self, minutes: int, lang: str) -> str:
        """A span for people, in the accusative where Russian needs it: «2 часа», «30 минут»."""
        for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
            if minutes >= size and (minutes % size == 0 or unit == "minute"):
                count = minutes // size
                return f"{count} {self.plural(f'unit.{unit}', count, lang)}"
        return f"{minutes} {self.plural('unit.minute', minutes, lang)}"

    def plural(self, key: str, count: int, lang: str) -> str:
        """The form of a ``one|few|many`` string (ru) or ``one|other`` string (en) for ``count``."""
        forms = self.string(key, lang).split("|")
        if lang == "ru" and len(forms) == 3:
            tail, tens = count % 10, count % 100
            if tail == 1 and tens != 11:
                return forms[0]
            if 2 <= tail <= 4 and not 12 <= tens <= 14:
                return forms[1]
            return forms[2]
        return forms[0] if count == 1 else forms[-1]


@cache
def _strings(root: Path, lang: str) -> dict[str, str]:
    data = yaml.safe_load((root / lang / "strings.yaml").read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in data.items()}
