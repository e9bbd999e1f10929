"""Configuration: every problem reported as file:key: reason, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desk.runtime.cli import main
from tests import ROOT
from tests.cli import run_cli

pytestmark = pytest.mark.second_pass


BROKEN = """\
company:
  timezone: Mars/Olympus
http:
  port: eighty
  colour: red
teams:
  - id: support
    lead: Никто
  - id: Support Team
categories:
  - id: returns
    team: warehouse
agents:
  - name: Ирина
    telegram_id: 1
    teams: [support]
  - name: Олег
    telegram_id: 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appeal-desk.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "appeal-desk.example.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_lists_every_problem_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    for line in [
        f"{path}:http.port: Input should be a valid integer",
        f"{path}:http.colour: unknown key",
        f"{path}:teams.1.id: must be 1-64 lowercase latin letters",
        f"{path}:categories.0.team: unknown team 'warehouse'",
        f"{path}:teams.0.lead: unknown agent 'Никто' (a name or Telegram id)",
        f"{path}:agents: duplicate telegram_id '1'",
        f"{path}:company.timezone: unknown time zone 'Mars/Olympus'",
    ]:
        assert line in err, err
    assert "Traceback" not in err


def test_yaml_syntax_error_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "http:\n  port: 80\n  host: [unclosed\n")
    assert main(["check-config", str(path)]) == 1
    assert f"{path}:4:1: invalid YAML" in capsys.readouterr().err


def test_missing_file_and_non_mapping_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml: file not found" in capsys.readouterr().err
    path = write(tmp_path, "- just\n- a list\n")
    assert main(["check-config", str(path)]) == 1
    assert "top level must be a mapping" in capsys.readouterr().err


def test_environment_problem_is_named_by_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESK_WORKERS__INTAKE", "many")
    monkeypatch.setenv("DESK_REDIS_URL", "http://localhost")
    path = write(tmp_path, "company:\n  name: Тест\n")
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "DESK_WORKERS__INTAKE: Input should be a valid integer" in err
    assert "DESK_REDIS_URL: must start with redis://" in err


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from desk.config.settings import load_settings

    monkeypatch.setenv("DESK_HTTP__PORT", "9123")
    settings = load_settings(write(tmp_path, "http:\n  port: 8000\n  host: 0.0.0.0\n"))
    assert settings.http.port == 9123
    assert settings.http.host == "0.0.0.0"  # noqa: S104


def test_serve_refuses_a_broken_config_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    env = {**os.environ, "DESK_CONFIG": str(path), "DESK_DATABASE_URL": f"sqlite://{tmp_path}/x.db"}
    proc = run_cli("serve", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{path}:categories.0.team: unknown team 'warehouse'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "x.db").exists()


BROKEN_RULE_SHAPES = """\
automation:
  rules:
    - name: after midnight
      on: appeal.exploded
      do:
        - action: add_tag
          tag: boom
    - name: wrong field
      on: rating.received
      if: stars < 3
      do:
        - action: alert_managers
    - name: bad action
      on: appeal.created
      do:
        - action: launch_rocket
"""
BROKEN_RULE_REFERENCES = """\
automation:
  off: [no such rule]
  rules:
    - name: lost template
      on: appeal.created
      do:
        - action: notify_customer
          template: no_such_letter
        - action: create_task
          template: no_such_task
    - name: unsigned hook
      on: appeal.created
      do:
        - action: call_webhook
          url: https://crm.example.com/hook
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BROKEN_RULE_SHAPES,
            [
                "automation.rules.0.on: rule 'after midnight': unknown event 'appeal.exploded'",
                "rule 'wrong field': the condition reads 'stars', which rating.received does not",
                "automation.rules.2.do.0: Input tag 'launch_rocket'",
            ],
        ),
        (
            BROKEN_RULE_REFERENCES,
            [
                "off: no shipped rule 'no such rule'",
                "rule 'lost template', notify_customer: template 'no_such_letter' is missing",
                "rule 'lost template', create_task: template 'tasks/no_such_task.txt.j2' is "
                "missing",
                "rule 'unsigned hook', call_webhook: set automation.webhook_secret",
            ],
        ),
    ],
)
def test_check_config_names_the_rule_of_every_automation_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    for piece in expected:
        assert piece in err, (piece, err)
    assert "Traceback" not in err


WEAK_SECRETS = """\
secret_key: x
monitoring:
  token: changeme-changeme
telegram:
  webhook_secret: aaaaaaaaaaaaaaaaaaaa
vk:
  secret: secret
automation:
  webhook_secret: 0123456789abcdefghijklmnopqrstuvwxyz
api:
  tokens:
    - name: crm
      token: replace-with-a-long-random-token
"""


def test_check_config_refuses_short_and_guessable_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, WEAK_SECRETS)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    for line in [
        f"{path}:secret_key: too short (1 character): use at least 32 random characters",
        f"{path}:monitoring.token: guessable: made of placeholder words",
        f"{path}:telegram.webhook_secret: guessable: repeated characters or a sequence",
        f"{path}:vk.secret: too short (6 characters): use at least 16 random characters",
        f"{path}:automation.webhook_secret: guessable: repeated characters or a sequence",
        f"{path}:api.tokens.0.token: guessable: made of placeholder words",
    ]:
        assert line in err, (line, err)
    assert "secrets.token_urlsafe(32)" in err  # how to make a good one
    assert "Traceback" not in err


def test_random_secrets_pass_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "secret_key: 9X2dY_pu2kQmFzL0-3Vw8HcRr5NtAbEj7GsKxWo1UiM\n"  # token_urlsafe(32)
        "monitoring:\n  token: 3f9a61c07be24d85\n"  # token_hex(8)
        "vk:\n  secret: c41e0b9d7a2f6e8357d1b0a9c4f2e6d8\n",  # token_hex(16)
    )
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err


def test_serve_refuses_a_weak_secret_from_the_environment(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DESK_SECRET_KEY": "k",
        "DESK_MONITORING__TOKEN": "1234567890123456",
        "DESK_DATABASE_URL": f"sqlite://{tmp_path}/x.db",
    }
    env.pop("DESK_CONFIG", None)
    proc = run_cli("serve", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "DESK_SECRET_KEY: too short (1 character)" in proc.stderr
    assert "DESK_MONITORING__TOKEN: guessable" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "x.db").exists()
