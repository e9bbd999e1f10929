"""VK channel: settings now; the vkbottle adapter arrives with the VK and email issue (#5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

VK_API_URL = "https://api.vk.com"


class VkSettings(BaseModel):
    """``DESK_VK__*``: the community token and id, API server, and Callback API secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    group_id: int | None = None
    api_url: str = VK_API_URL
    mode: Literal["longpoll", "callback"] = "longpoll"
    secret: SecretStr | None = None
    confirmation: str = ""
    timeout_s: float = Field(default=10.0, gt=0)

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if self.token is None:
            return "DESK_VK__TOKEN is not set"
        if self.group_id is None:
            return "DESK_VK__GROUP_ID is not set"
        return "the VK adapter is not part of this version yet (issue #5)"
