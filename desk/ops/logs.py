"""Logging set-up: readable text by default, JSON lines on request, extra fields kept, the
appeal and channel being handled on every line, personal data and secrets masked."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from desk.config.settings import Settings
from desk.ops.log_context import STANDARD_FIELDS, ContextFilter, redact

# At DEBUG these log whole requests: tokens, IMAP LOGIN with the password, message texts.
# aiogram.event writes a line for every update handled; «message stored» says more.
NOISY_LOGGERS = (
    "tortoise",
    "aiosqlite",
    "asyncpg",
    "aiohttp.access",
    "aioimaplib",
    "vkbottle",
    "aiogram.event",
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_FIELDS}


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return f"{line} {extra}" if extra else line

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_text:  # rendered and masked by the ContextFilter
            data["exc"] = redact(record.exc_text)
        elif record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str, ensure_ascii=False)


def log_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """The service's log handler: the configured format, context fields, masking."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter(configured_secrets(settings)))
    return handler


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold, to be masked wherever it shows in a log line."""
    values = [
        settings.secret_key,
        settings.monitoring.token,
        settings.telegram.token,
        settings.telegram.webhook_secret,
        settings.vk.token,
        settings.vk.secret,
        settings.email.imap_password,
        settings.email.smtp_password,
        settings.automation.webhook_secret,
        *(t.token for t in settings.api.tokens),
    ]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def setup_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Configure the root logger from the settings (lines to stderr unless ``stream``)."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(settings, stream)]
    root.setLevel(settings.log_level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
