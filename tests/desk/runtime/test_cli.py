"""The appeal-desk command: migrate and token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from desk.runtime.cli import main
from tests.cli import run_cli

pytestmark = pytest.mark.second_pass


def test_migrate_applies_once_then_has_nothing_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "DESK_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    from models.db import known_migrations

    applied = f"applied {len(known_migrations())} migration(s)"
    for expected in (applied, "nothing to apply"):
        # A separate process: it must also exit by itself (no connection left open).
        done = run_cli("migrate", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


def test_commands_without_chats_start_without_the_chat_libraries(tmp_path: Path) -> None:
    # aiogram and vkbottle take seconds to import (pydantic builds hundreds of models):
    # reading the configuration must not need them, or every migrate, export and check-config
    # waits for them (they once took 8 s of a 9 s migrate on a 2-core machine).
    env = {**os.environ, "DESK_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    done = run_cli("migrate", env=env, cwd=tmp_path, python_flags=("-X", "importtime"))
    assert done.returncode == 0, done.stderr
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()}
    assert not {"aiogram", "vkbottle"} & imported


def test_token_create_prints_a_token_that_the_api_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from desk.config.keys import TokenBook
    from desk.config.settings import Settings
    from models import db

    url = f"sqlite://{tmp_path}/cli.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESK_DATABASE_URL", url)
    assert main(["migrate"]) == 0
    assert main(["token", "create", "crm", "--role", "agent"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("desk_")

    async def check() -> tuple[str, str] | None:
        await db.connect(url)
        try:
            caller = await TokenBook(Settings(database_url=url)).caller(token)
            wrong = await TokenBook(Settings(database_url=url)).caller(token + "x")
        finally:
            await db.disconnect()
        assert wrong is None
        return (caller.name, caller.role) if caller else None

    assert asyncio.run(check()) == ("crm", "agent")


def test_token_list_shows_each_token_without_it_and_revoke_removes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path}/cli.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESK_DATABASE_URL", url)
    monkeypatch.setenv(
        "DESK_API__TOKENS", '[{"name": "erp", "token": "erp-KjedHIfjGHdAUz_W-3zHzYF6"}]'
    )
    assert main(["migrate"]) == 0
    assert main(["token", "create", "crm", "--role", "agent", "--expires-in", "90d"]) == 0
    assert main(["token", "create", "boss", "--role", "manager"]) == 0
    made = capsys.readouterr()
    tokens = [line for line in made.out.splitlines() if line.startswith("desk_")]
    assert len(tokens) == 2 and "expires 20" in made.err
    assert main(["token", "create", "crm"]) == 1
    assert "a token named 'crm' exists already" in capsys.readouterr().err
    assert main(["token", "create", "x", "--expires-in", "soon"]) == 1
    assert "is not a period like 90d" in capsys.readouterr().err

    assert main(["token", "list"]) == 0
    listed = capsys.readouterr().out
    header, crm, boss, erp = listed.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "CREATED", "LAST", "USED", "EXPIRES"]
    assert crm.split()[:3] == ["1", "crm", "agent"] and "never" in crm and "UTC" in crm
    assert boss.split()[:3] == ["2", "boss", "manager"] and crm.endswith("UTC")
    assert boss.endswith("never") and erp.split()[:3] == ["config", "erp", "agent"]
    assert not any(token in listed for token in tokens) and "KjedHIfj" not in listed

    assert main(["token", "revoke", "1"]) == 0
    assert "token 'crm' revoked" in capsys.readouterr().out
    assert main(["token", "revoke", "crm"]) == 1
    assert main(["token", "revoke", "erp"]) == 1
    assert "named in the config: remove it there" in capsys.readouterr().err
    assert main(["token", "list"]) == 0
    assert " crm " not in capsys.readouterr().out


def test_unreachable_database_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESK_DATABASE_URL", "postgres://nobody:x@127.0.0.1:1/none")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appeal-desk: ") and "Traceback" not in err
    assert "x@" not in err  # the password is not printed


def test_router_eval_reports_accuracy_on_a_labelled_file(tmp_path: Path) -> None:
    examples = [
        {"text": f"{text} {i}", "category": category}
        for i in range(6)
        for text, category in (
            ("хочу вернуть товар размер не подошел", "returns"),
            ("пришлите акт сверки и счет", "documents"),
            ("где мой заказ когда доставят", "order_status"),
        )
    ]
    data = tmp_path / "labelled.yaml"
    data.write_text(yaml.safe_dump(examples, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "DESK_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    done = run_cli("router-eval", "--labelled", str(data), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "accuracy  100.0%" in done.stdout
    assert "returns" in done.stdout and "held-out" in done.stdout


def test_router_eval_scores_a_set_written_apart_with_the_shipped_seeds(tmp_path: Path) -> None:
    examples = [
        {"text": text, "category": category, "lang": lang}
        for text, category, lang in (
            ("хочу вернуть кеды, размер не подошёл", "returns", "ru"),
            ("пришлите счёт на оплату для ООО", "documents", "ru"),
            ("де моя посилка? чекаю тиждень", "order_status", "uk"),
            ("the kettle leaks, I want my money back", "returns", "en"),
            ("спасибо огромное, всё понравилось", "feedback", "ru"),
            ("нужно 300 кружек с логотипом", "wholesale", "ru"),
            ("есть в наличии синий свитер 48 размера?", "availability", "ru"),
            ("курьер нахамил, это безобразие", "complaint", "ru"),
            ("во сколько вы открываетесь в субботу?", "general", "ru"),
            ("как подключить колонку к телефону?", "consultation", "ru"),
        )
    ]
    data = tmp_path / "unseen.yaml"
    data.write_text(yaml.safe_dump(examples, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "DESK_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    done = run_cli("router-eval", "--labelled", str(data), "--unseen", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "shipped seed examples, tested on 10 unseen" in done.stdout
    assert "left to a person" in done.stdout
    assert "language uk" in done.stdout and "language en" in done.stdout


def test_router_eval_unseen_needs_a_file(tmp_path: Path) -> None:
    done = run_cli("router-eval", "--unseen", env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 1 and "--unseen needs --labelled" in done.stderr


def test_router_eval_with_too_few_examples_says_so(tmp_path: Path) -> None:
    data = tmp_path / "few.yaml"
    data.write_text("- {text: привет, category: general}\n", encoding="utf-8")
    done = run_cli("router-eval", "--labelled", str(data), env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 1 and "too few" in done.stdout
