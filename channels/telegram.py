"""Telegram channel: settings now; the aiogram adapter arrives with the Telegram issue (#4)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

TELEGRAM_API_URL = "https://api.telegram.org"


class TelegramSettings(BaseModel):
    """``DESK_TELEGRAM__*``: the bot token, API server, update mode and the staff chats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    api_url: str = TELEGRAM_API_URL
    mode: Literal["polling", "webhook"] = "polling"
    webhook_secret: SecretStr | None = None
    staff_chat_id: int | None = None
    managers_chat_id: int | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        head, _, tail = value.get_secret_value().partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("a bot token looks like 123456:ABC-DEF (from @BotFather)")
        return value

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if self.token is None:
            return "DESK_TELEGRAM__TOKEN is not set"
        if self.mode == "webhook" and self.webhook_secret is None:
            return "webhook mode needs DESK_TELEGRAM__WEBHOOK_SECRET"
        return "the Telegram adapter is not part of this version yet (issue #4)"
