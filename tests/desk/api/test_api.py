"""The HTTP API and the customer pages, through a real aiohttp client against a running desk."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from models import Appeal, Event, Message, OutboxItem, OutboxStatus
from tests.conftest import Desk

APPEAL = {"name": "Ирина", "email": "irina@example.com", "text": "Где мой заказ 1234?"}


async def send_appeal(
    desk: Desk, payload: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    status, body = await desk.post(
        "/api/v1/appeals", payload or APPEAL, auth=False, headers=headers or None
    )
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def page(desk: Desk, url: str) -> tuple[int, str]:
    async with desk.http.get(url) as resp:
        return resp.status, await resp.text()


async def wait_delivered(desk: Desk) -> None:
    await desk.service.ctx.outbox.wait(0)  # type: ignore[union-attr]
    import asyncio

    for _ in range(100):
        if not await OutboxItem.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
        ).exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("outbox not drained")


async def test_customer_appeal_gets_number_and_a_working_status_link(desk: Desk) -> None:
    body = await send_appeal(desk)
    assert body["number"] == "A-000001" and body["status"] == "open"  # the router placed it
    status, html = await page(desk, body["status_url"])
    assert status == 200
    assert "A-000001" in html and "Где мой заказ 1234?" in html


async def test_staff_reply_reaches_the_customer_status_page(desk: Desk) -> None:
    body = await send_appeal(desk)
    status, msg = await desk.post(
        "/api/v1/appeals/A-000001/messages", {"text": "Заказ уже в пути <b>сегодня</b>"}
    )
    assert status == 201 and msg["direction"] == "out"
    await wait_delivered(desk)
    _, html = await page(desk, body["status_url"])
    assert "Заказ уже в пути &lt;b&gt;сегодня&lt;/b&gt;" in html
    detail = (await desk.get("/api/v1/appeals/A-000001"))[1]
    assert detail["status"] == "open" and detail["first_response_at"]
    assert detail["messages"][-1]["delivery_state"] == "sent"


async def test_customer_reply_on_status_page_joins_the_appeal(desk: Desk) -> None:
    body = await send_appeal(desk)
    async with desk.http.post(
        body["status_url"] + "/reply", data={"text": "Спасибо!"}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
    messages = await Message.filter(appeal__number="A-000001").order_by("id")
    assert [m.text for m in messages] == ["Где мой заказ 1234?", "Спасибо!"]


# What a browser sends for a textarea of 18,590 characters in 1,430 lines: it counts each line
# break as one character (maxlength) and sends it as CRLF, 20,020 characters in all.
BROWSER_TEXT = "\r\n".join(f"строка {i:05}" for i in range(1430)) + "\r\n"


async def test_a_long_reply_counts_as_the_browser_counted_it(desk: Desk) -> None:
    assert len(BROWSER_TEXT.replace("\r\n", "\n")) == 18_590 and len(BROWSER_TEXT) == 20_020
    body = await send_appeal(desk)
    async with desk.http.post(
        body["status_url"] + "/reply", data={"text": BROWSER_TEXT}, allow_redirects=False
    ) as resp:
        assert resp.status == 303 and resp.headers["Location"].endswith("?replied=1")
    messages = await Message.filter(appeal__number="A-000001").order_by("id")
    assert messages[-1].text == BROWSER_TEXT.replace("\r\n", "\n").strip()


async def test_a_reply_too_long_is_shown_again_with_the_reason(desk: Desk) -> None:
    body = await send_appeal(desk)
    _, html = await page(desk, body["status_url"])
    assert 'maxlength="20000"' in html
    typed = "Очень длинный ответ <b>с разметкой</b>\r\n" + "я" * 20_000
    async with desk.http.post(body["status_url"] + "/reply", data={"text": typed}) as resp:
        assert resp.status == 422
        html = await resp.text()
    assert "Текст слишком длинный: не больше 20000 символов." in html
    kept = html.split('name="text"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    assert kept == "Очень длинный ответ &lt;b&gt;с разметкой&lt;/b&gt;\n" + "я" * 20_000
    assert await Message.filter(appeal__number="A-000001").count() == 1


async def test_a_long_web_form_text_counts_as_the_browser_counted_it(desk: Desk) -> None:
    form = {"name": "Олег", "email": "oleg@example.com", "text": BROWSER_TEXT}
    async with desk.http.post(desk.base + "/appeal", data=form, allow_redirects=False) as resp:
        assert resp.status == 303
    message = await Message.get(appeal__number="A-000001")
    assert message.text == BROWSER_TEXT.replace("\r\n", "\n").strip()


async def test_note_stays_internal(desk: Desk) -> None:
    body = await send_appeal(desk)
    status, _ = await desk.post("/api/v1/appeals/A-000001/notes", {"text": "клиент VIP"})
    assert status == 201
    _, html = await page(desk, body["status_url"])
    assert "клиент VIP" not in html
    assert await OutboxItem.all().count() == 0


async def test_same_idempotency_key_creates_one_appeal(desk: Desk) -> None:
    first = await send_appeal(desk, **{"Idempotency-Key": "order-1234-form"})
    second = await send_appeal(desk, **{"Idempotency-Key": "order-1234-form"})
    assert first["number"] == second["number"] == "A-000001"
    assert await Appeal.all().count() == 1 and await Message.all().count() == 1


async def test_idempotency_key_with_other_body_is_refused(desk: Desk) -> None:
    await send_appeal(desk, **{"Idempotency-Key": "k-1"})
    status, body = await desk.post(
        "/api/v1/appeals",
        {**APPEAL, "text": "другое"},
        auth=False,
        headers={"Idempotency-Key": "k-1"},
    )
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"


async def test_list_filters_search_and_pages(desk: Desk) -> None:
    for i in range(3):
        await send_appeal(
            desk, {**APPEAL, "text": f"вопрос номер {i}", "email": f"c{i}@example.com"}
        )
    await desk.post("/api/v1/appeals/A-000002/status", {"status": "pending"})
    status, page1 = await desk.get("/api/v1/appeals?per_page=2")
    assert status == 200 and page1["total"] == 3
    assert [a["number"] for a in page1["items"]] == ["A-000003", "A-000002"]
    _, pending = await desk.get("/api/v1/appeals?status=pending")
    assert [a["number"] for a in pending["items"]] == ["A-000002"]
    _, found = await desk.get("/api/v1/appeals?q=" + "номер 2")
    assert [a["number"] for a in found["items"]] == ["A-000003"]
    _, by_channel = await desk.get("/api/v1/appeals?channel=web&page=2&per_page=2")
    assert [a["number"] for a in by_channel["items"]] == ["A-000001"]


async def test_status_change_and_invalid_move(desk: Desk) -> None:
    await send_appeal(desk)
    status, body = await desk.post(
        "/api/v1/appeals/A-000001/status", {"status": "resolved", "reason": "ответили"}
    )
    assert status == 200 and body["status"] == "resolved"
    await desk.post("/api/v1/appeals/A-000001/status", {"status": "closed"})
    status, body = await desk.post("/api/v1/appeals/A-000001/status", {"status": "open"})
    assert status == 409
    assert body["error"]["message"] == "appeal A-000001 is closed: it cannot become open"
    kinds = [h["kind"] for h in (await desk.get("/api/v1/appeals/A-000001"))[1]["history"]]
    assert kinds.count("appeal.status_changed") == 3  # categorised, resolved, closed


async def test_assign_to_agent_and_unknown_agent(desk: Desk) -> None:
    await send_appeal(desk)
    status, body = await desk.post("/api/v1/appeals/A-000001/assign", {"agent": "Ирина"})
    assert status == 200 and body["assignee"] == "Ирина" and body["status"] == "open"
    _, mine = await desk.get("/api/v1/appeals?assignee=1001")
    assert mine["total"] == 1
    status, body = await desk.post("/api/v1/appeals/A-000001/assign", {"agent": "Никто"})
    assert status == 422 and "agent Никто not found" in body["error"]["message"]
    first, second = await Event.filter(kind="appeal.assigned").order_by("id")
    assert first.actor == "router" and "least_loaded" in first.data["reason"]
    assert second.actor == "api:tests"


async def test_staff_api_needs_a_valid_token(desk: Desk) -> None:
    status, body = await desk.get("/api/v1/appeals", auth=False)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    async with desk.http.get(
        desk.base + "/api/v1/appeals", headers={"Authorization": "Bearer wrong-token"}
    ) as resp:
        assert resp.status == 401


async def test_unknown_appeal_is_404(desk: Desk) -> None:
    status, body = await desk.get("/api/v1/appeals/A-999999")
    assert status == 404 and body["error"]["message"] == "appeal A-999999 not found"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**APPEAL, "name": 42}, "name"),
        ({**APPEAL, "colour": "red"}, "colour"),
        ({"name": "Ира", "text": "нет контакта"}, "body"),
        ({**APPEAL, "email": "not-an-email"}, "email"),
        ({**APPEAL, "text": ""}, "text"),
        ({**APPEAL, "text": "x" * 20_001}, "text"),
        ([1, 2, 3], "body"),
    ],
)
async def test_bad_appeal_bodies_get_422_naming_the_field(
    desk: Desk, payload: Any, field: str
) -> None:
    status, body = await desk.post("/api/v1/appeals", payload, auth=False)
    assert status == 422, body
    assert field in {f["field"] for f in body["error"]["fields"]} | {"body"}
    assert await Appeal.all().count() == 0


async def test_broken_json_is_400_and_huge_body_is_413(desk: Desk) -> None:
    async with desk.http.post(
        desk.base + "/api/v1/appeals",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]["message"]
    huge = b'{"name": "' + b"x" * 10_000_000 + b'"}'
    try:
        async with desk.http.post(
            desk.base + "/api/v1/appeals", data=huge, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "too_large"
    except aiohttp.ClientOSError:
        pass  # the server may close the socket while a 10 MB body is still being written
    assert await Appeal.all().count() == 0


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        ("/api/v1/appeals", False),
        ("/api/v1/orders", True),
        ("/api/v1/orders/1001/stage", True),
        ("/api/v1/appeals/A-000001/messages", True),
        ("/api/v1/tasks/1/complete", True),
    ],
)
async def test_a_number_too_long_to_read_is_a_400_not_a_logged_500(
    desk: Desk, path: str, auth: bool, caplog: pytest.LogCaptureFixture
) -> None:
    raw = b'{"name": "\xd0\x98", "text": "x", "stage": "new", "n": ' + b"9" * 4301 + b"}"
    headers = {"Content-Type": "application/json", **(desk.auth if auth else {})}
    async with desk.http.post(desk.base + path, data=raw, headers=headers) as resp:
        assert resp.status == 400
        message = (await resp.json())["error"]["message"]
    assert message == "request body has a number too long to read (over 4300 digits)"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert await Appeal.all().count() == 0


async def test_html_in_names_and_texts_is_escaped_everywhere(desk: Desk) -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
    body = await send_appeal(
        desk, {"name": evil, "email": "e@example.com", "text": evil, "subject": evil}
    )
    _, html = await page(desk, body["status_url"])
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_forged_or_expired_status_link_gets_a_clear_page(desk: Desk) -> None:
    body = await send_appeal(desk)
    forged = re.sub(r".$", lambda m: "A" if m.group(0) != "A" else "B", body["status_url"])
    status, html = await page(desk, forged)
    assert status == 403 and "A-000001" not in html
    ctx = desk.service.ctx
    assert ctx is not None
    from datetime import timedelta

    old = ctx.signer.sign(
        "status", body["receipt"], ctx.clock() - timedelta(days=200), timedelta(days=90)
    )
    status, html = await page(desk, f"{desk.base}/s/{old}")
    assert status == 410 and "Где мой заказ" not in html


async def test_web_form_submission_redirects_to_status_page(desk: Desk) -> None:
    async with desk.http.post(
        desk.base + "/appeal",
        data={"name": "Олег", "phone": "8 (999) 000-11-22", "text": "Есть ли в наличии?"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        location = resp.headers["Location"]
    status, html = await page(desk, desk.base + location)
    assert status == 200 and "Есть ли в наличии?" in html
    appeal = await Appeal.get(number="A-000001")
    assert appeal.channel == "web"


async def test_web_form_errors_are_shown_and_nothing_is_stored(desk: Desk) -> None:
    async with desk.http.post(desk.base + "/appeal", data={"name": "", "text": "?"}) as resp:
        assert resp.status == 422
        html = await resp.text()
    assert "<form" in html and await Appeal.all().count() == 0


async def test_openapi_describes_every_operation(desk: Desk) -> None:
    status, spec = await desk.get("/api/v1/openapi.json", auth=False)
    assert status == 200 and spec["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert {
        ("POST", "/api/v1/appeals"),
        ("GET", "/api/v1/appeals"),
        ("GET", "/api/v1/appeals/{number}"),
        ("POST", "/api/v1/appeals/{number}/messages"),
        ("POST", "/api/v1/appeals/{number}/notes"),
        ("POST", "/api/v1/appeals/{number}/status"),
        ("POST", "/api/v1/appeals/{number}/assign"),
        ("GET", "/healthz"),
    } <= ops
    for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(spec).replace("'", '"')):
        assert ref in spec["components"]["schemas"]


async def test_healthz_and_unknown_api_path(desk: Desk) -> None:
    assert await desk.get("/healthz", auth=False) == (200, {"status": "ok"})
    status, body = await desk.get("/api/v1/nothing", auth=False)
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_two_customers_merged_through_the_api_share_one_history(desk: Desk) -> None:
    first = await send_appeal(desk)
    second = await send_appeal(
        desk, {"name": "Ирина П.", "phone": "+7 916 555-44-33", "text": "Это я, с другого телефона"}
    )
    a = await Appeal.get(number=first["number"])
    b = await Appeal.get(number=second["number"])
    assert a.customer_id != b.customer_id
    status, body = await desk.post(
        f"/api/v1/customers/{a.customer_id}/merge", {"customer_id": b.customer_id}
    )
    assert status == 200, body
    assert body["appeals"] == 2
    assert {c["channel"] for c in body["contacts"]} == {"email", "phone"}
    assert (await Appeal.get(id=b.id)).customer_id == a.customer_id
    assert await Event.filter(kind="customer.merged", customer_id=a.customer_id).exists()
    status, body = await desk.post(
        f"/api/v1/customers/{a.customer_id}/merge", {"customer_id": a.customer_id}
    )
    assert status == 409
    status, body = await desk.post("/api/v1/customers/999999/merge", {"customer_id": 1})
    assert status == 404
    status, body = await desk.post(f"/api/v1/customers/{a.customer_id}/merge", {"customer_id": "x"})
    assert status == 422


async def test_unknown_or_repeated_query_parameters_are_a_400_naming_them(desk: Desk) -> None:
    status, body = await desk.get("/api/v1/appeals?status=open&tagg=vip&colour=red")
    assert status == 400 and body["error"]["code"] == "unknown_parameter"
    assert "'tagg', 'colour'" in body["error"]["message"]
    assert "tag" in body["error"]["message"]  # what the endpoint does take
    assert [f["field"] for f in body["error"]["fields"]] == ["tagg", "colour"]
    for path in ("/api/v1/tasks?done=1", "/api/v1/reports/ratings?perod=week"):
        status, body = await desk.get(path)
        assert status == 400 and body["error"]["code"] == "unknown_parameter", path
    status, body = await desk.get("/api/v1/appeals/A-000001?full=1")
    assert status == 400 and "'full'" in body["error"]["message"]
    status, body = await desk.get("/api/v1/appeals?status=open&status=closed")
    assert status == 400 and "'status' is given more than once" in body["error"]["message"]
    status, _ = await desk.get("/api/v1/appeals?tagg=vip", auth=False)
    assert status == 401  # a stranger learns nothing about the parameters


async def test_appeals_filter_by_tag(desk: Desk) -> None:
    for i in range(3):
        await send_appeal(desk, {**APPEAL, "email": f"t{i}@example.com"})
    triage = desk.service.ctx.triage  # type: ignore[union-attr]
    await triage.tag("A-000001", "vip-2", actor="tests")
    await triage.tag("A-000002", "vip", actor="tests")
    await triage.tag("A-000003", "Важно", actor="tests")
    _, vip = await desk.get("/api/v1/appeals?tag=vip")
    assert [a["number"] for a in vip["items"]] == ["A-000002"] and vip["total"] == 1
    _, important = await desk.get("/api/v1/appeals?tag=Важно")
    assert [a["number"] for a in important["items"]] == ["A-000003"]
    _, none = await desk.get("/api/v1/appeals?tag=vi")
    assert none["total"] == 0


async def test_completing_a_task_twice_says_it_is_done_when_and_by_whom(desk: Desk) -> None:
    from tortoise.transactions import in_transaction

    from desk.appeals.tasks import create_task

    await send_appeal(desk)
    appeal = await Appeal.get(number="A-000001")
    ctx = desk.service.ctx
    assert ctx is not None
    async with in_transaction():
        task = await create_task(
            ctx.lifecycle.events,
            kind="call",
            text="позвонить",
            due_at=None,
            actor="tests",
            appeal=appeal,
        )
    url = f"/api/v1/tasks/{task.id}/complete"
    status, done = await desk.post(url, {"result": "reached"})
    assert status == 200 and done["status"] == "done"
    status, body = await desk.post(url, {"result": "no_answer"})
    assert status == 409
    message = body["error"]["message"]
    assert message.startswith(f"task {task.id} is already done (result: reached) on ")
    assert done["completed_at"][:10] in message and message.endswith(
        "by tests; nothing was changed"
    )
    status, body = await desk.post("/api/v1/tasks/99999/complete", {"result": "reached"})
    assert status == 404 and body["error"]["message"] == "task 99999 not found"
    status, body = await desk.post("/api/v1/tasks/abc/complete", {"result": "reached"})
    assert status == 404 and body["error"]["message"] == "task abc not found"


async def test_a_method_not_allowed_names_the_allowed_ones(desk: Desk) -> None:
    async with desk.http.delete(desk.base + "/api/v1/appeals", headers=desk.auth) as resp:
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) >= {"GET", "POST"}
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
    async with desk.http.put(desk.base + "/healthz") as resp:
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
    async with desk.http.put(desk.base + "/appeal") as resp:  # a page answers with a page
        assert resp.status == 405 and resp.headers["Allow"] == "POST"


async def test_openapi_gives_each_customer_shape_its_own_name(desk: Desk) -> None:
    _, spec = await desk.get("/api/v1/openapi.json", auth=False)
    schemas = spec["components"]["schemas"]

    def target(model: str) -> dict[str, Any]:
        ref = schemas[model]["properties"]["customer"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]

    assert "contacts" in target("AppealDetailOut")["properties"]
    assert "lifecycle" in target("TimelineOut")["properties"]


async def test_length_limits_and_required_texts_are_checked_as_sent(desk: Desk) -> None:
    padded = " " + "x" * 20_000 + " "  # 20,002 characters sent: over the documented 20,000
    status, body = await desk.post("/api/v1/appeals", {**APPEAL, "text": padded}, auth=False)
    assert status == 422 and body["error"]["fields"][0]["field"] == "text"
    status, body = await desk.post("/api/v1/appeals", {**APPEAL, "name": " \t "}, auth=False)
    assert status == 422
    assert body["error"]["fields"] == [{"field": "name", "message": "must not be blank"}]
    status, body = await desk.post("/api/v1/appeals", {**APPEAL, "name": "  Ира  "}, auth=False)
    assert status == 201
    assert (await Appeal.get(number=body["number"]).prefetch_related("customer")).customer.name == (
        "Ира"
    )
    assert await Appeal.all().count() == 1


async def test_email_or_phone_rule_is_in_the_document_and_the_server(desk: Desk) -> None:
    _, spec = await desk.get("/api/v1/openapi.json", auth=False)
    rule = spec["components"]["schemas"]["NewAppealIn"]["anyOf"]
    assert [r["required"] for r in rule] == [["email"], ["phone"]]
    assert [r["required"] for r in spec["components"]["schemas"]["CustomerIn"]["anyOf"]] == [
        ["email"],
        ["phone"],
        ["telegram_id"],
        ["vk_id"],
    ]
    no_contact = {"name": "Ира", "text": "вопрос", "email": "  ", "phone": ""}
    status, body = await desk.post("/api/v1/appeals", no_contact, auth=False)
    assert status == 422 and "give an email or a phone" in body["error"]["message"]
    status, body = await desk.post("/api/v1/appeals", {**no_contact, "phone": "12"}, auth=False)
    assert status == 422 and body["error"]["fields"][0]["field"] == "phone"
    status, _ = await desk.post(
        "/api/v1/appeals", {**no_contact, "phone": "+7 999 000-11-22"}, auth=False
    )
    assert status == 201
