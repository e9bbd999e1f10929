"""Request and response bodies of the HTTP API; the OpenAPI document is built from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from channels.web import WebAppeal
from desk.appeals.customers import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    SPACE,
    normalise_email,
    normalise_phone,
)
from models import MAX_ID, AppealStatus, Priority, storable, whole_characters

MAX_TEXT = 20_000


def _number_not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would take true for 1
        raise ValueError("must be a number, not true or false")
    return value


RowId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_number_not_bool)]


# Every rule below is checked on the string as it was sent, as the OpenAPI document states it
# (``maxLength``, ``pattern``); only then is it trimmed and made storable.
NOT_BLANK = rf"[^{SPACE}\x00]"  # a required text needs one character besides spaces and NUL
EMAIL_OR_BLANK = rf"^[{SPACE}]*(?:{EMAIL_PATTERN})?[{SPACE}]*$"  # blank: no email given
PHONE_OR_BLANK = rf"^(?:[{SPACE}]*|{PHONE_PATTERN})$"  # blank: no phone given


# What a field that does not match its pattern is told (the pattern itself says little).
PATTERN_MESSAGES = {
    NOT_BLANK: "must not be blank",
    EMAIL_OR_BLANK: "not an email address",
    PHONE_OR_BLANK: "not a phone number: give 10 to 15 digits",
}


class Body(BaseModel):
    """A request body: unknown fields and wrong types are errors; strings are checked as sent,
    then made storable (no NUL, no unpaired surrogates) and trimmed."""

    # python-re: the document's patterns mean what Python's re says they mean, and
    # whitespace is what str.strip() removes.
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")

    @field_validator("*", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        # pydantic cannot read unpaired surrogates; U+FFFD keeps the length as sent.
        return whole_characters(value) if isinstance(value, str) else value

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Plain text only: an enum member (a str too) stays what it is.
        return storable(value).strip() if type(value) is str else value


def one_of_contacts(*fields: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The document's form of "at least one of these contacts": each ``(name, schema)`` is a
    field that counts when present and matching ``schema``."""
    return {"anyOf": [{"required": [n], "properties": {n: schema}} for n, schema in fields]}


# A contact counts when it is given and not blank (its own pattern already holds).
GIVEN_EMAIL = ("email", {"type": "string", "pattern": f"[^{SPACE}]"})
GIVEN_PHONE = ("phone", {"type": "string", "pattern": "[0-9]"})


class ContactsIn(Body):
    """A customer's email and/or phone, normalised; one of them is required, so the customer
    can be answered and found again."""

    model_config = ConfigDict(json_schema_extra=one_of_contacts(GIVEN_EMAIL, GIVEN_PHONE))

    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_OR_BLANK)
    phone: str | None = Field(default=None, max_length=40, pattern=PHONE_OR_BLANK)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value else None  # the pattern held: never None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else None  # the pattern held: never None

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not self.email and not self.phone:
            raise ValueError("give an email or a phone so the customer can be answered")
        return self


class NewAppealIn(ContactsIn):
    """A customer's appeal from the web form or an integration; an email or a phone (or both)
    is required, so the customer can be answered."""

    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    subject: str = Field(default="", max_length=300)
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK)
    language: Literal["ru", "en"] | None = None

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


class TakenAppealIn(ContactsIn):
    """An appeal an agent took down for a customer who phoned (``phone``) or came to the
    office (``visit``); a phone or an email (or both) is required, to find the customer and
    acknowledge the appeal."""

    channel: Literal["phone", "visit"] = Field(
        default="phone", description="how the customer came: a call or a visit"
    )
    name: str = Field(
        default="",
        max_length=200,
        description="the customer's name; may be left out for one the desk knows by the contacts",
    )
    subject: str = Field(default="", max_length=300)
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK)
    language: Literal["ru", "en"] | None = Field(
        default=None, description="the customer's language; default: the company's"
    )
    agent: str | None = Field(
        default=None,
        max_length=200,
        description="the agent who took it (id, Telegram id or name); default: the caller",
    )


class TakenAppealOut(BaseModel):
    """A taken appeal: its number once registered (then ``GET /api/v1/appeals/{number}`` shows
    it), the customer it went to, and the customer's status page."""

    number: str | None = Field(description="null while the appeal is still being registered")
    status: str
    channel: Literal["phone", "visit"]
    customer_id: int | None = Field(description="the customer found or created; null as number")
    receipt: str = Field(description="the appeal's message id: the same for a repeated request")
    status_url: str | None = Field(description="the customer's status page; null as number")


class TextIn(Body):
    """A staff answer or note."""

    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK)
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


class AppealCustomerOut(BaseModel):
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

    customer: AppealCustomerOut
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
