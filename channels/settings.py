"""The settings of the chat channels (``DESK_TELEGRAM__*``, ``DESK_VK__*``), apart from the
channels themselves: reading the configuration does not import aiogram or vkbottle, whose
imports take seconds, so a command that needs neither starts at once."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from channels.secret_strength import TOKEN_CHARS, strong_secret

TELEGRAM_API_URL = "https://api.telegram.org"
VK_API_URL = "https://api.vk.com"


class TelegramLimits(BaseModel):
    """``DESK_TELEGRAM__LIMITS__*``: the flood limits the desk keeps to, Telegram's by default
    (a local Bot API server, or a benchmark's fake, may allow more)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_per_minute: int = Field(default=20, ge=1, description="posts a minute in a group")
    bot_per_second: int = Field(default=30, ge=1, description="sends a second by the bot")
    private_per_second: float = Field(default=1.0, gt=0, description="in one private chat")
    private_burst: float = Field(default=3.0, ge=1, description="a private chat's short burst")


class TelegramSettings(BaseModel):
    """``DESK_TELEGRAM__*``: the bot token, API server, update mode and the staff chats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    api_url: str = TELEGRAM_API_URL
    mode: Literal["polling", "webhook"] = "polling"
    webhook_secret: Annotated[SecretStr | None, strong_secret(TOKEN_CHARS)] = None
    webhook_path: str = "/telegram/webhook"
    staff_chat_id: int | None = None
    managers_chat_id: int | None = None
    timeout_s: float = Field(default=10.0, gt=0, description="a call that posts nothing")
    answer_wait_s: int = Field(
        default=40,
        ge=1,
        le=50,  # under the outbox lease (60 s): a row waiting for its answer stays this worker's
        description="how long a post waits for Telegram's answer (a late one is no failure)",
    )
    poll_timeout_s: int = Field(default=25, ge=0, le=50)
    sign_replies: bool = Field(default=True, description="add the agent's name to answers")
    album_wait_s: float = Field(default=2.0, ge=0, description="wait for an album's parts")
    feed_interval_s: float = Field(default=30.0, ge=1, description="at most one feed edit per")
    limits: TelegramLimits = TelegramLimits()

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        head, _, tail = value.get_secret_value().partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("a bot token looks like 123456:ABC-DEF (from @BotFather)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        secret = value.get_secret_value()
        if not 1 <= len(secret) <= 256 or not all(c.isalnum() or c in "_-" for c in secret):
            raise ValueError("1-256 characters: letters, digits, '_' and '-' (Telegram's rule)")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith(("/api/", "/feedback/")):
            raise ValueError("a path of its own starting with '/', e.g. /telegram/webhook")
        return value

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if self.token is None:
            return "DESK_TELEGRAM__TOKEN is not set"
        if self.mode == "webhook" and self.webhook_secret is None:
            return "webhook mode needs DESK_TELEGRAM__WEBHOOK_SECRET"
        return None

    @property
    def reports_chat_id(self) -> int | None:
        """Where reports go and report commands are taken: the managers' chat, else the staff
        group."""
        return self.managers_chat_id if self.managers_chat_id is not None else self.staff_chat_id


class VkSettings(BaseModel):
    """``DESK_VK__*``: the community token and id, API server, and Callback API secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    group_id: int | None = None
    api_url: str = VK_API_URL
    mode: Literal["longpoll", "callback"] = "longpoll"
    secret: Annotated[SecretStr | None, strong_secret(TOKEN_CHARS)] = None
    confirmation: str = ""
    callback_path: str = "/vk/callback"
    timeout_s: float = Field(default=10.0, gt=0)
    wait_s: int = Field(default=25, ge=1, le=90, description="long poll wait")
    calls_per_second: int = Field(default=20, ge=1, le=20)
    max_file_bytes: int = Field(
        default=20 * 1024 * 1024, ge=0, description="larger files are kept as VK's link"
    )

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if self.token is None:
            return "DESK_VK__TOKEN is not set"
        if self.group_id is None:
            return "DESK_VK__GROUP_ID is not set"
        if self.mode == "callback" and (self.secret is None or not self.confirmation):
            return "callback mode needs DESK_VK__SECRET and DESK_VK__CONFIRMATION"
        return None


SMSAERO_URL = "https://gate.smsaero.ru/v2"
_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ._-]{2,11}$|^\d{3,15}$")


class SmsSettings(BaseModel):
    """``DESK_SMS__*``: the SMS gateway's account, the sender name, the parts and day caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["smsaero"] = "smsaero"
    login: str = Field(default="", description="the gateway account's login (SMS Aero: email)")
    api_key: SecretStr | None = None
    sender: str = Field(
        default="", description="the sender name approved by the gateway (SMS Aero: «подпись»)"
    )
    base_url: str = SMSAERO_URL
    max_parts: int = Field(default=3, ge=1, le=10, description="longer texts are shortened")
    daily_parts: int | None = Field(
        default=500,
        ge=1,
        description="parts sent a day (company time) at most; then call tasks. null: no cap",
    )
    pause_minutes: int = Field(
        default=30,
        ge=1,
        le=24 * 60,
        description="after 'no money' or refused credentials, SMS rest this long",
    )
    status_poll_s: float = Field(
        default=60.0, ge=1, description="how often delivery reports are asked for"
    )
    receipt_hours: int = Field(
        default=24, ge=1, le=168, description="a report is waited for this long"
    )
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("login")
    @classmethod
    def _login_shape(cls, value: str) -> str:
        value = value.strip()
        if value and "@" not in value:
            raise ValueError("SMS Aero's login is the account's email address")
        return value

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        key = value.get_secret_value().strip()
        if not 16 <= len(key) <= 64 or not all(c.isalnum() or c in "_-" for c in key):
            raise ValueError("an API key is 16-64 letters, digits, '_' or '-' (cabinet → API)")
        return SecretStr(key)

    @field_validator("sender")
    @classmethod
    def _sender_shape(cls, value: str) -> str:
        value = value.strip()
        if value and not _SENDER.match(value):
            raise ValueError(
                "a sender name is 2-11 Latin letters, digits, spaces, '.', '_' or '-' "
                "(with a letter), or a number of 3-15 digits"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test gateway)")
        return value.rstrip("/")

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if not self.login and self.api_key is None:
            return "DESK_SMS__LOGIN and DESK_SMS__API_KEY are not set"
        if not self.login or self.api_key is None:
            return f"DESK_SMS__{'API_KEY' if self.login else 'LOGIN'} is not set"
        if not self.sender:
            return "DESK_SMS__SENDER is not set (the sender name the gateway approved)"
        return None
