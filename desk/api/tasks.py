"""Tasks for people over HTTP: list them (win-back calls, call-backs) and record results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from tortoise.transactions import in_transaction

from desk.api.errors import json_response, read_json
from desk.api.operation import Link, Operation, QueryParam, caller_of, ctx_of
from desk.api.query import enum_param, int_param, text_param
from desk.api.schemas import Body
from desk.api.staff import MAX_PAGE
from desk.appeals.triage import find_agent
from desk.config.errors import TaskNotFound
from desk.features.winback import complete_call
from models import MAX_ID, Agent, Appeal, Customer, Task, TaskStatus, fits, parse_id

MAX_PER_PAGE = 200


class TaskOut(Body):
    """A task and, once done, its result."""

    id: int
    kind: str
    status: str
    text: str
    customer_id: int | None
    customer_name: str | None = Field(default=None, description="the customer's name")
    appeal_id: int | None
    appeal_number: str | None = Field(default=None, description="the appeal's number")
    assignee_id: int | None
    assignee: str | None = Field(default=None, description="the assignee's name")
    due_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    result: str
    reason: str


class TaskPage(Body):
    """One page of tasks."""

    items: list[TaskOut]
    page: int
    per_page: int
    total: int


class CompleteIn(Body):
    """How a call went."""

    result: Literal["reached", "no_answer", "returned"]
    reason: str = Field(default="", max_length=500, description="why the customer left")


@dataclass(frozen=True, slots=True)
class TaskNames:
    """The names of what tasks refer to, by id."""

    customers: dict[int, str]
    numbers: dict[int, str]
    agents: dict[int, str]

    @classmethod
    async def of(cls, tasks: list[Task]) -> TaskNames:
        """Read with one query per kind, whatever the number of tasks."""
        customers = {t.customer_id for t in tasks if t.customer_id is not None}
        appeals = {t.appeal_id for t in tasks if t.appeal_id is not None}
        agents = {t.assignee_id for t in tasks if t.assignee_id is not None}
        return cls(
            dict(await Customer.filter(id__in=customers).values_list("id", "name"))
            if customers
            else {},
            dict(await Appeal.filter(id__in=appeals).values_list("id", "number"))
            if appeals
            else {},
            dict(await Agent.filter(id__in=agents).values_list("id", "name")) if agents else {},
        )


def task_out(task: Task, names: TaskNames | None = None) -> dict[str, Any]:
    """The API form of a task (with the names of its customer, appeal and assignee when
    ``names`` are given)."""
    return TaskOut(
        id=task.id,
        kind=task.kind,
        status=task.status.value,
        text=task.text,
        customer_id=task.customer_id,
        customer_name=names.customers.get(task.customer_id)
        if names is not None and task.customer_id is not None
        else None,
        appeal_id=task.appeal_id,
        appeal_number=names.numbers.get(task.appeal_id)
        if names is not None and task.appeal_id is not None
        else None,
        assignee_id=task.assignee_id,
        assignee=names.agents.get(task.assignee_id)
        if names is not None and task.assignee_id is not None
        else None,
        due_at=task.due_at,
        created_at=task.created_at,
        completed_at=task.completed_at,
        result=task.result,
        reason=task.reason,
    ).model_dump(mode="json")


async def list_tasks(request: web.Request) -> web.Response:
    """Tasks, soonest due first, filtered and paginated."""
    page = int_param(request, "page", 1, 1, MAX_PAGE)
    per_page = int_param(request, "per_page", 50, 1, MAX_PER_PAGE)
    query = Task.all()
    if status := enum_param(request, "status", [s.value for s in TaskStatus]):
        query = query.filter(status=status)
    if kind := text_param(request, "kind"):
        query = query.filter(kind=kind) if fits(Task, "kind", kind) else query.filter(id=0)
    if "customer_id" in request.query:
        query = query.filter(customer_id=int_param(request, "customer_id", 0, 1, MAX_ID))
    if assignee := text_param(request, "assignee"):
        if assignee == "none":
            query = query.filter(assignee_id__isnull=True)
        else:
            query = query.filter(assignee_id=(await find_agent(assignee)).id)
    total = await query.count()
    rows = await query.order_by("due_at", "id").offset((page - 1) * per_page).limit(per_page)
    names = await TaskNames.of(list(rows))
    out = TaskPage(
        items=[TaskOut.model_validate(task_out(t, names)) for t in rows],
        page=page,
        per_page=per_page,
        total=total,
    )
    return json_response(out.model_dump(mode="json"))


async def complete_task(request: web.Request) -> web.Response:
    """Record a call's result; a task already done is 409."""
    ctx = ctx_of(request)
    body = CompleteIn.model_validate(await read_json(request))
    raw_id = request.match_info["task_id"]
    task_id = parse_id(raw_id)
    if task_id is None:
        raise TaskNotFound(raw_id[:50])
    async with in_transaction():
        task = await complete_call(
            ctx.lifecycle.events,
            ctx.settings.customers,
            task_id,
            body.result,
            reason=body.reason,
            actor=caller_of(request).name,
            now=ctx.clock(),
        )
    ctx.outbox.wake()
    return json_response(task_out(task, await TaskNames.of([task])))


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/tasks",
        list_tasks,
        "List tasks (win-back calls, call-backs)",
        response=TaskPage,
        errors=(400, 401, 422),
        links={"CompleteTask": Link("complete_task", {"task_id": "$response.body#/items/0/id"})},
        query=(
            QueryParam("status", {"type": "string", "enum": [s.value for s in TaskStatus]}),
            QueryParam("kind", {"type": "string"}, "call, winback, …"),
            QueryParam("customer_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}),
            QueryParam("assignee", {"type": "string"}, "id, Telegram id, name or none"),
            QueryParam("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            QueryParam("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}),
        ),
    ),
    Operation(
        "POST",
        "/api/v1/tasks/{task_id}/complete",
        complete_task,
        "Record the result of a call",
        body=CompleteIn,
        response=TaskOut,
        errors=(400, 401, 404, 409, 422),
    ),
]
