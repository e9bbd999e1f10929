"""Request and response bodies of the HTTP API; the OpenAPI document is built from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from channels.web import WebAppeal
from desk.customers import normalise_email, normalise_phone
from models import MAX_ID, AppealStatus, Priority, storable

MAX_TEXT = 20_000


def _number_not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would take true for 1
        raise ValueError("must be a number, not true or false")
    return value


RowId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_number_not_bool)]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are errors; strings are made storable
    (no NUL, no unpaired surrogates) and trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value) if isinstance(value, str) else value


class NewAppealIn(Body):
    """A customer's appeal from the web form or an integration."""

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    subject: str = Field(default="", max_length=300)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    language: Literal["ru", "en"] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        email = normalise_email(value)
        if email is None:
            raise ValueError("not a valid email address")
        return email

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if not value:
            return None
        phone = normalise_phone(value)
        if phone is None:
            raise ValueError("not a valid phone number")
        return phone

    @model_validator(mode="after")
    def _reachable(self) -> NewAppealIn:
        if not self.email and not self.phone:
            raise ValueError("give an email or a phone so the customer can be answered")
        return self

    def web_appeal(self, language: str) -> WebAppeal:
        """The web channel's form of this appeal."""
        return WebAppeal(
            name=self.name,
            text=self.text,
            email=self.email,
            phone=self.phone,
            subject=self.subject,
            language=language,
        )


class NewAppealOut(BaseModel):
    """The answer to a new appeal: its number once registered, and the status page link."""

    number: str | None = Field(description="null while the appeal is still being registered")
    status: str
    status_url: str
    receipt: str


class TextIn(Body):
    """A staff answer or note."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    agent: str | None = Field(
        default=None,
        max_length=200,
        description="agent id, Telegram id or name; default: the caller",
    )


class StatusIn(Body):
    """A status change."""

    status: AppealStatus
    reason: str = Field(default="", max_length=500)


class AssignIn(Body):
    """An assignment; null takes the appeal from its assignee."""

    agent: str | None = Field(max_length=200)


class MessageOut(BaseModel):
    """One message of an appeal."""

    id: int
    direction: Literal["in", "out", "note"]
    author: str
    channel: str
    text: str
    attachments: list[dict[str, Any]]
    delivery_state: str
    created_at: datetime


class EventOut(BaseModel):
    """One line of an appeal's history."""

    id: int
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: datetime


class CustomerOut(BaseModel):
    """The customer of an appeal with their contact points."""

    id: int
    name: str
    language: str
    contacts: list[dict[str, Any]]


class AppealOut(BaseModel):
    """An appeal as listed."""

    number: str
    status: AppealStatus
    channel: str
    subject: str
    category: str | None
    priority: Priority
    tags: list[str]
    assignee: str | None
    team: str | None
    customer_id: int
    first_response_due: datetime | None
    first_response_at: datetime | None
    resolution_due: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AppealDetailOut(AppealOut):
    """An appeal with its customer, messages and history."""

    customer: CustomerOut
    messages: list[MessageOut]
    history: list[EventOut]


class AppealPage(BaseModel):
    """One page of appeals."""

    items: list[AppealOut]
    page: int
    per_page: int
    total: int


class ErrorDetail(BaseModel):
    """Why a request failed."""

    code: str
    message: str
    fields: list[dict[str, Any]] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every error answer of the API has this shape."""

    error: ErrorDetail


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class MergeIn(BaseModel):
    """Which customer to merge into the one in the path."""

    model_config = ConfigDict(extra="forbid")

    customer_id: RowId
