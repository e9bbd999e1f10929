"""The answer templates over HTTP: what agents send with ``/t``, for another client to offer."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from desk.api.errors import json_response
from desk.api.operation import Operation, ctx_of
from desk.features.answers import PLACEHOLDERS


class AnswerOut(BaseModel):
    """One template: its name (``/t NAME``), its title and its text per language (``ru``,
    ``en``; a language may be missing: the customer then gets the other)."""

    name: str
    title: dict[str, str]
    texts: dict[str, str] = Field(
        description="Jinja2 text with the placeholders listed in `placeholders`"
    )


class AnswersOut(BaseModel):
    """The templates in force, in the file's order, and what their texts may fill in."""

    answers: list[AnswerOut]
    placeholders: list[str] = Field(
        description="customer: the customer's name; number: the appeal number; agent: the "
        "agent's name; company: the company's name"
    )


async def list_answers(request: web.Request) -> web.Response:
    """The answer templates agents send (the file named by ``answers_file``)."""
    book = ctx_of(request).answers
    items = book.all() if book is not None else []
    out = AnswersOut(
        answers=[AnswerOut(name=a.name, title=dict(a.titles), texts=dict(a.texts)) for a in items],
        placeholders=list(PLACEHOLDERS),
    )
    return json_response(out.model_dump(mode="json"))


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/answers",
        list_answers,
        "The answer templates agents send, with their texts per language",
        response=AnswersOut,
        errors=(401,),
    ),
]
