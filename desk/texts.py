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

    def render(self, name: str, lang: str, **context: Any) -> str:
        """Render ``<lang>/<name>`` (e.g. ``web/status.html.j2``) with ``lang`` in the context."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        return self._env.get_template(f"{lang}/{name}").render(lang=lang, **context)

    def string(self, key: str, lang: str, **values: Any) -> str:
        """A short UI string from ``<lang>/strings.yaml``, with ``{placeholders}`` filled."""
        lang = lang if lang in LANGUAGES else LANGUAGES[0]
        text = _strings(self._root, lang)[key]
        return text.format(**values) if values else text


@cache
def _strings(root: Path, lang: str) -> dict[str, str]:
    data = yaml.safe_load((root / lang / "strings.yaml").read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in data.items()}
