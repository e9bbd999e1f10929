"""What an agent does in an appeal's topic, over HTTP: set its category, priority and tags,
postpone it (until a time), hand it to another category or team. The same desk services as
the staff group's buttons and commands, so the history, the card and the router's examples
are the same whichever way it was done."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import AwareDatetime, ConfigDict, Field

from desk.api.errors import ApiError, json_response, read_json
from desk.api.operation import Operation, caller_of, ctx_of
from desk.api.schemas import NOT_BLANK, AppealDetailOut, Body
from desk.api.staff import appeal_detail
from desk.appeals.postpone import DURATION_PATTERN, checked, duration_of
from desk.appeals.triage import MAX_TAG_CHARS, MAX_TAGS
from desk.config.errors import InvalidInput
from desk.decide.appeal_edit import AppealEdit, edit_appeal
from desk.decide.routing import Routing
from models import AppealStatus, Priority

BAD_TIME = "bad_time"  # a postponement's time past or over a year away (the clock, not a shape)


class AppealChangeIn(Body):
    """Any of category, priority and tags; what is left out stays as it is."""

    category: str | None = Field(
        default=None,
        max_length=64,
        description="a configured category's id: set as the staff group's buttons set it, "
        "and kept as an example the router learns from",
    )
    priority: Priority | None = None
    tags: list[Annotated[str, Field(max_length=MAX_TAG_CHARS, pattern=NOT_BLANK)]] | None = Field(
        default=None,
        max_length=MAX_TAGS,
        description="the whole new set of tags (added and removed ones are written to the "
        "history one by one, as /tag does)",
    )


class PostponeIn(Body):
    """Postponed with a reason, until a moment or for a span (or neither: for
    ``lifecycle.postpone_hours``, as ``/postpone`` without a time)."""

    model_config = ConfigDict(
        json_schema_extra={"not": {"required": ["until", "duration"]}},
    )

    reason: str = Field(default="", max_length=500)
    until: AwareDatetime | None = Field(
        default=None, description="back in work at this moment (ahead, within a year)"
    )
    duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="back in work after this span: 90m, 2h, 3d, 1w (within a year)",
    )


class TransferIn(Body):
    """The category (its team follows) or the team to hand the appeal to; the assignee is
    freed, as with /transfer."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("category", "team")
            ],
        }
    )

    category: str | None = Field(default=None, max_length=64)
    team: str | None = Field(default=None, max_length=64)


def _routing(request: web.Request) -> Routing:
    routing = ctx_of(request).routing
    if routing is None:
        raise ApiError(503, "unavailable", "the router is not running in this process")
    return routing


async def _detail(appeal: Any) -> web.Response:
    return json_response((await appeal_detail(appeal)).model_dump(mode="json"))


async def change_appeal(request: web.Request) -> web.Response:
    """Set the category, priority and/or tags (422 naming the valid values)."""
    ctx = ctx_of(request)
    body = AppealChangeIn.model_validate(await read_json(request))
    routing = _routing(request)
    if body.category is not None:
        try:
            routing.category_of(body.category)
        except InvalidInput as exc:
            fields = [{"field": "category", "message": str(exc)}]
            raise ApiError(422, "invalid", str(exc), fields) from None
    edit = AppealEdit(category=body.category, priority=body.priority, tags=body.tags)
    appeal = await edit_appeal(
        ctx.lifecycle,
        routing,
        ctx.triage,
        request.match_info["number"],
        edit,
        actor=caller_of(request).actor,
    )
    return await _detail(appeal)


async def postpone(request: web.Request) -> web.Response:
    """Postpone the appeal (pending) with a reason, until a moment or for a span."""
    ctx = ctx_of(request)
    body = PostponeIn.model_validate(await read_json(request))
    if {"until", "duration"} <= body.model_fields_set:  # as the document says: not both keys
        message = "give either until or duration, not both"
        raise ApiError(422, "invalid", message, [{"field": "duration", "message": message}])
    now = ctx.clock()
    until = body.until
    field = "until"
    if body.duration is not None:
        span = duration_of(body.duration)
        assert span is not None  # the pattern let it through
        until, field = now + span, "duration"
    if until is not None:
        try:
            checked(until, now)
        except InvalidInput as exc:
            raise ApiError(
                422, BAD_TIME, str(exc), [{"field": field, "message": str(exc)}]
            ) from None
    appeal = await ctx.lifecycle.transition(
        request.match_info["number"],
        AppealStatus.PENDING,
        actor=caller_of(request).actor,
        reason=body.reason,
        until=until,
    )
    return await _detail(appeal)


async def transfer(request: web.Request) -> web.Response:
    """Hand the appeal to another category (and its team) or team."""
    ctx = ctx_of(request)
    body = TransferIn.model_validate(await read_json(request))
    if (body.category is None) == (body.team is None):
        message = "give a category or a team (one of them)"
        raise ApiError(422, "invalid", message, [{"field": "body", "message": message}])
    appeal = await ctx.triage.transfer_to(
        request.match_info["number"],
        category=body.category,
        team=body.team,
        actor=caller_of(request).actor,
    )
    return await _detail(appeal)


_NUMBER = "/api/v1/appeals/{number}"
OPERATIONS = [
    Operation(
        "PATCH",
        _NUMBER,
        change_appeal,
        "Set the category, priority and tags of an appeal",
        body=AppealChangeIn,
        response=AppealDetailOut,
        errors=(400, 401, 404, 422),
    ),
    Operation(
        "POST",
        f"{_NUMBER}/postpone",
        postpone,
        "Postpone an appeal with a reason, until a moment or for a span",
        body=PostponeIn,
        response=AppealDetailOut,
        errors=(400, 401, 404, 409, 422),
    ),
    Operation(
        "POST",
        f"{_NUMBER}/transfer",
        transfer,
        "Hand an appeal to another category (and its team) or team",
        body=TransferIn,
        response=AppealDetailOut,
        errors=(400, 401, 404, 422),
    ),
]
