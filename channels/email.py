"""Email channel: settings now; the IMAP/SMTP adapter arrives with the VK and email issue (#5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class EmailSettings(BaseModel):
    """``DESK_EMAIL__*``: the support mailbox (IMAP in, SMTP out) and the desk's address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = ""
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_user: str = ""
    imap_password: SecretStr | None = None
    imap_tls: Literal["ssl", "starttls", "none"] = "ssl"
    smtp_host: str = ""
    smtp_port: int = Field(default=465, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["ssl", "starttls", "none"] = "ssl"
    max_attachment_bytes: int = Field(default=10_485_760, ge=0)

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if not self.address:
            return "DESK_EMAIL__ADDRESS is not set"
        if not self.imap_host or not self.smtp_host:
            return "DESK_EMAIL__IMAP_HOST and DESK_EMAIL__SMTP_HOST are needed"
        return "the email adapter is not part of this version yet (issue #5)"
