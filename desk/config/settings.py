"""Settings: ``DESK_*`` environment variables over the YAML file named by ``DESK_CONFIG``."""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import time
from email.headerregistry import Address
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

import router
from channels.email.mail import EmailSettings
from channels.secret_strength import SIGNING_KEY_CHARS, TOKEN_CHARS, strong_secret
from channels.settings import SmsSettings, TelegramSettings, VkSettings
from desk.config.config_errors import ConfigError, load_yaml, read_yaml, validation_problems
from desk.config.notice_templates import notice_problems, rule_problems
from desk.config.texts import Texts
from models.enums import AgentRole, Priority
from router.assign import ShiftHours, Strategy
from router.automation import Choice, CreateTask, NotifyCustomer, QuietHours, RequestRating, Rule
from router.classify import Recogniser
from router.risk import RiskRules
from router.sla import SlaSettings

DEFAULT_CONFIG_FILE = "appeal-desk.yaml"
ENV_PREFIX = "DESK_"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _identifier(value: str) -> str:
    if not _ID.match(value):
        raise ValueError("must be 1-64 lowercase latin letters, digits, '-' or '_'")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


class Section(BaseModel):
    """A config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteLimits(Section):
    """The token buckets of one kind of anonymous request: per client address and overall,
    each ``burst`` requests at once, then ``per_minute``."""

    per_address_per_minute: float = Field(default=5, gt=0, le=1_000_000)
    per_address_burst: int = Field(default=10, ge=1, le=1_000_000)
    overall_per_minute: float = Field(default=30, gt=0, le=1_000_000)
    overall_burst: int = Field(default=60, ge=1, le=1_000_000)


class PageLimits(RouteLimits):
    """Status-page replies, the rating pages (/feedback/…) and the choice pages (/c/…)."""

    per_address_per_minute: float = Field(default=30, gt=0, le=1_000_000)
    per_address_burst: int = Field(default=30, ge=1, le=1_000_000)
    overall_per_minute: float = Field(default=600, gt=0, le=1_000_000)
    overall_burst: int = Field(default=300, ge=1, le=1_000_000)


class RateLimitSettings(Section):
    """``DESK_HTTP__RATE_LIMITS__*``: the anonymous endpoints' budgets (429 beyond them).
    Telegram, VK and email never pass here: their customers are never limited."""

    enabled: bool = True
    appeals: RouteLimits = Field(
        default_factory=RouteLimits,
        description="new appeals: POST /api/v1/appeals and the web form (POST /appeal)",
    )
    pages: PageLimits = Field(default_factory=PageLimits)
    addresses: int = Field(
        default=10_000,
        ge=100,
        le=10_000_000,
        description="client addresses remembered, the least recently seen forgotten first",
    )


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description=(
            "addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; from "
            "any other peer the header is ignored and the peer is the client"
        ),
    )
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    # Above aiohttp's client keep-alive (15 s): a client must close an idle connection before
    # the desk does, or a request sent on it just then is lost on the way.
    header_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description=(
            "a request's line and headers must have arrived this long after the connection "
            "opened or the last answer, else it is closed (an idle keep-alive lasts this long)"
        ),
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="a request's body must have arrived by then: 408"
    )
    # Telegram posts a webhook's updates over up to setWebhook's max_connections (40 unless
    # set, at most 100) from a few of its servers: the cap must leave it all of them.
    connections_per_address: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="open connections from one address (not counting trusted proxies); more: 503",
    )


class MonitoringSettings(Section):
    """``DESK_MONITORING__*``: the operators' endpoints /metrics and /readyz."""

    metrics: bool = Field(default=True, description="serve /metrics (Prometheus text); off: 404")
    token: Annotated[SecretStr | None, strong_secret(TOKEN_CHARS)] = Field(
        default=None,
        description=(
            "when set, /metrics wants 'Authorization: Bearer <token>'; without it /metrics is "
            "open like /healthz and /readyz, so keep the port off the internet or set a token"
        ),
    )
    check_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="each /readyz check fails as 'timeout' after this"
    )


class WorkerSettings(Section):
    intake: int = Field(default=1, ge=0, le=32, description="intake workers in this process")
    delivery: int = Field(default=1, ge=0, le=32, description="delivery workers in this process")
    name: str = ""
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=(
            "a 'worker' process serves /metrics and /healthz on this port of http.host (each "
            "process its own port; 0 picks a free one); unset: no port"
        ),
    )
    claim_idle_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=20, ge=1, description="then an entry is set aside")
    poll_s: float = Field(default=0.5, gt=0, le=60, description="idle delivery worker's nap")
    sla_scan_s: float = Field(
        default=60.0, gt=0, description="how often SLA timers and due tasks are checked"
    )
    stop_grace_s: float = Field(
        default=15.0, gt=0, le=300, description="on SIGTERM: how long work in flight may finish"
    )


class CompanySettings(Section):
    name: str = "Appeal Desk"
    timezone: str = "Europe/Moscow"
    language: Literal["ru", "en"] = "ru"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (e.g. Europe/Moscow)") from None
        return value


class LifecycleSettings(Section):
    reopen_window_hours: float = Field(default=72, ge=0)
    status_link_days: int = Field(default=90, ge=1)
    max_text_chars: int = Field(default=20_000, ge=100)
    postpone_hours: float = Field(
        default=24,
        gt=0,
        le=24 * 366,
        description="a postponed appeal comes back to work after this long, unless told when",
    )


class TeamConfig(Section):
    id: Identifier
    title: str = ""
    strategy: Strategy = Field(default=Strategy.STICKY, description="who gets a new appeal")
    fallback: Strategy = Strategy.LEAST_LOADED
    lead: str | None = Field(
        default=None,
        description="the agent (name or Telegram id from `agents`) who gets the team's call "
        "tasks that no agent owns; unset: the first manager",
    )


class CategoryConfig(Section):
    id: Identifier
    title: dict[str, str] = Field(default_factory=dict)
    team: str | None = None
    priority: Priority = Priority.NORMAL
    match: Recogniser = Field(default_factory=Recogniser)


class RouterSettings(Section):
    confident: float = Field(default=0.45, gt=0, lt=1, description="below: a person picks")
    fallback: str | None = Field(default=None, description="category when nothing fits")
    learn: bool = Field(default=True, description="learn from agents' category choices")
    seed_examples: bool = Field(
        default=True,
        description="the model starts from the shipped labelled appeals; agents' choices on top",
    )
    retrain_minutes: float = Field(default=10.0, gt=0)
    risk: RiskRules = Field(default_factory=RiskRules)


class AgentConfig(Section):
    telegram_id: int | None = None
    name: str = Field(min_length=1)
    role: AgentRole = AgentRole.AGENT
    teams: list[str] = Field(default_factory=list)
    capacity: int = Field(default=10, ge=0)
    hours: ShiftHours | None = Field(default=None, description="working hours; none: any time")


class ApiTokenConfig(Section):
    name: str = Field(min_length=1)
    token: Annotated[SecretStr, strong_secret(TOKEN_CHARS)]
    role: AgentRole = AgentRole.AGENT


class ApiSettings(Section):
    tokens: list[ApiTokenConfig] = Field(default_factory=list)


class StageConfig(Section):
    title: dict[str, str] = Field(default_factory=dict, description="per language")
    notify: bool = Field(default=True, description="tell the customer of this stage")
    template: str = Field(default="order_stage", min_length=1)
    channels: Literal["preferred", "conversation", "any"] = "preferred"
    quiet_hours: QuietHours | None = QuietHours()
    call: bool = Field(default=False, description="a call task with the script instead")
    lines: dict[str, str] = Field(default_factory=dict, description="extra lines (upsell)")
    choices: list[Choice] = Field(default_factory=list)
    rating: bool = Field(default=False, description="ask for a rating at this stage")


class OrderSettings(Section):
    stages: dict[str, StageConfig] = Field(
        default_factory=dict, description="none: the shipped stages (router/stages.yaml)"
    )

    @model_validator(mode="after")
    def _templates_exist(self) -> OrderSettings:

        texts = Texts()
        problems = [
            f"stage '{stage_id}': {problem}"
            for stage_id, stage in self.stages.items()
            if stage.notify and not stage.call
            for problem in notice_problems(texts, stage.template)
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self


class RatingSettings(Section):
    valid_days: int = Field(
        default=7, ge=1, le=90, description="how long a rating request can be answered"
    )
    comment_minutes: int = Field(
        default=60,
        ge=1,
        le=24 * 60,
        description="after a button press, the customer's next message this soon is the comment",
    )


class CustomerSettings(Section):
    lost_after_days: int = Field(
        default=90, ge=1, le=3650, description="no order for this long makes a customer lost"
    )
    rhythm_factor: float = Field(
        default=3.0,
        ge=1.0,
        le=20.0,
        description="or, with enough orders: this many times their median interval",
    )
    rhythm_min_orders: int = Field(
        default=4, ge=3, description="orders needed before a customer's own rhythm counts"
    )
    scan_at: time = Field(default=time(8, 0), description="the daily scan, company time")
    winback_days: dict[str, int] = Field(
        default_factory=lambda: {"hot": 7, "warm": 14, "cold": 30},
        description="days between win-back calls to a lost customer, by warmth",
    )
    no_answer_retry_days: int = Field(
        default=2, ge=1, le=60, description="a win-back call nobody answered is tried again"
    )
    winback_team: str | None = Field(
        default=None, description="who calls when the customer has no last agent"
    )
    leave_reasons: list[str] = Field(
        default_factory=list,
        max_length=12,
        description="reasons for leaving offered after «Дозвонились»; empty: the shipped list",
    )
    reason_minutes: int = Field(
        default=30, ge=1, le=1440, description="how long a typed reason is waited for"
    )
    remind_at: time = Field(
        default=time(10, 0), description="overdue tasks are reminded daily at this company time"
    )

    @field_validator("winback_days")
    @classmethod
    def _every_warmth(cls, days: dict[str, int]) -> dict[str, int]:
        wanted = {"hot", "warm", "cold"}
        if set(days) != wanted or any(d < 1 for d in days.values()):
            raise ValueError("give days ≥ 1 for each of hot, warm and cold")
        return days


def _mail_address(value: str) -> str:
    """A bare mail address (``name@example.com``), lower-cased domain; a clear error else."""
    value = value.strip()
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError):  # IndexError: the stdlib's parser on some broken input
        raise ValueError(f"not a mail address: {value!r}") from None
    if not parsed.username or "." not in parsed.domain or parsed.domain.startswith("."):
        raise ValueError(f"not a mail address: {value!r}")
    return f"{parsed.username}@{parsed.domain.lower()}"


MailAddress = Annotated[str, AfterValidator(_mail_address)]


class ManagerEmail(Section):
    """One manager who hears the desk's alerts by mail."""

    address: MailAddress
    language: Literal["ru", "en"] | None = Field(
        default=None, description="of the mails; unset: company.language"
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_address(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value


def _address_list(value: Any) -> Any:
    """``DESK_MANAGERS__EMAILS`` as a JSON list or as addresses separated by commas."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in (p.strip() for p in text.split(",")) if part]
    return value


class ManagerSettings(Section):
    """``DESK_MANAGERS__*``: who hears low ratings, «Важно» and SLA breaches by mail (beside
    the managers' chat, or instead of it on a desk without Telegram)."""

    emails: Annotated[list[ManagerEmail], NoDecode, BeforeValidator(_address_list)] = Field(
        default_factory=list,
        max_length=50,
        description=(
            "managers' addresses (or {address, language}); the alerts go through the desk's "
            "SMTP (email.address and email.smtp_host)"
        ),
    )

    @field_validator("emails")
    @classmethod
    def _each_once(cls, emails: list[ManagerEmail]) -> list[ManagerEmail]:
        seen: set[str] = set()
        for manager in emails:
            if manager.address in seen:
                raise ValueError(f"duplicate address '{manager.address}'")
            seen.add(manager.address)
        return emails


class ReportSettings(Section):
    digest_at: time | None = Field(
        default=None,
        description="yesterday's digest in the managers' chat at this company time (unset: none)",
    )
    digest_days: int = Field(
        default=14, ge=2, le=62, description="days on the digest's chart, yesterday last"
    )


class AutomationSettings(Section):
    defaults: bool = Field(default=True, description="the shipped rules (router/rules.yaml)")
    off: list[str] = Field(default_factory=list, description="shipped rules switched off, by name")
    rules: list[Rule] = Field(
        default_factory=list, description="a rule named like a shipped one replaces it"
    )
    webhook_secret: Annotated[SecretStr | None, strong_secret(SIGNING_KEY_CHARS)] = Field(
        default=None, description="HMAC key of call_webhook requests (X-Desk-Signature)"
    )

    @model_validator(mode="after")
    def _rules_make_sense(self) -> AutomationSettings:

        shipped = {r.name for r in default_rules()}
        problems = [f"off: no shipped rule '{n}'" for n in self.off if n not in shipped]
        problems += _duplicates("automation.rules", [r.name for r in self.rules], what="name")
        texts = Texts()
        for rule in self.rules:
            problems += rule_problems(texts, rule)
            if self.webhook_secret is None and any(a.action == "call_webhook" for a in rule.do):
                problems.append(f"rule '{rule.name}', call_webhook: set automation.webhook_secret")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Settings(BaseSettings):
    """Everything the service reads at start-up, validated as a whole."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database_url: str = "sqlite://appeal-desk.db"
    redis_url: str | None = None
    public_url: str | None = None
    secret_key: Annotated[SecretStr | None, strong_secret(SIGNING_KEY_CHARS)] = Field(
        default=None, description="signs status, rating and choice links; unset: generated once"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    answers_file: str | None = Field(
        default=None,
        description="answer templates for /t; unset: answers.yaml where the desk runs, else the "
        "starter set shipped in templates/answers.yaml",
    )
    http: HttpSettings = HttpSettings()
    workers: WorkerSettings = WorkerSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    telegram: TelegramSettings = TelegramSettings()
    vk: VkSettings = VkSettings()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    company: CompanySettings = CompanySettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    sla: SlaSettings = SlaSettings()
    api: ApiSettings = ApiSettings()
    teams: list[TeamConfig] = Field(default_factory=list)
    categories: list[CategoryConfig] = Field(default_factory=list)
    router: RouterSettings = RouterSettings()
    agents: list[AgentConfig] = Field(default_factory=list)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    orders: OrderSettings = Field(default_factory=OrderSettings)
    ratings: RatingSettings = RatingSettings()
    customers: CustomerSettings = CustomerSettings()
    reports: ReportSettings = ReportSettings()
    managers: ManagerSettings = ManagerSettings()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg"):
            raise ValueError(f"unsupported database '{scheme}' (use sqlite:// or postgres://)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems = reference_problems(self.model_dump(mode="json"))
        if self.managers.emails and self.email.sending_disabled_reason() is not None:
            problems.append(
                "managers.emails: mail to managers needs the desk's SMTP: "
                f"{self.email.sending_disabled_reason()}"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs (see load_settings); environment wins over it.
        return (env_settings, init_settings)

    def effective_public_url(self) -> str:
        """The base URL customers reach the service at (for status and rating links)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http.host in ("0.0.0.0", "::") else self.http.host  # noqa: S104
        return f"http://{host}:{self.http.port}"


def default_categories() -> list[CategoryConfig]:
    """The categories shipped with the desk (seed 001's kinds of appeal), used when the config
    names none."""
    return list(_shipped_categories())


@functools.cache
def _shipped_categories() -> tuple[CategoryConfig, ...]:
    # Read once per process: cards and pickers ask for the categories on every post.
    path = Path(router.__file__).parent / "categories.yaml"
    data = load_yaml(path.read_text(encoding="utf-8")) or []
    return tuple(CategoryConfig.model_validate(item) for item in data)


def default_rules() -> list[Rule]:
    """The automation rules shipped with the desk (seeds 000 and 004)."""
    path = Path(router.__file__).parent / "rules.yaml"
    data = load_yaml(path.read_text(encoding="utf-8")) or []
    return [Rule.model_validate(item) for item in data]


def rules_of(settings: Settings) -> list[Rule]:
    """The rules in force: the shipped ones (unless switched off or replaced), those of the
    order stages, then the config's own."""
    own = settings.automation.rules
    names = {r.name for r in own} | set(settings.automation.off)
    shipped = default_rules() if settings.automation.defaults else []
    shipped += stage_rules(stages_of(settings))
    return [r for r in shipped if r.name not in names] + list(own)


def default_stages() -> dict[str, StageConfig]:
    """The order stages shipped with the desk (seed 003)."""
    path = Path(router.__file__).parent / "stages.yaml"
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return {k: StageConfig.model_validate(v) for k, v in data.items()}


def stages_of(settings: Settings) -> dict[str, StageConfig]:
    """The order stages in force: the config's, else the shipped ones."""
    return dict(settings.orders.stages) or default_stages()


def stage_rules(stages: dict[str, StageConfig]) -> list[Rule]:
    """Automation rules that carry out the stage settings: a notice (with its choices) or a
    call task when an order enters a stage, a task for choices that ask for one."""
    rules: list[Rule] = []
    for stage_id, stage in stages.items():
        actions: list[Any] = []
        if stage.notify and stage.call:
            actions.append(
                CreateTask(
                    action="create_task",
                    kind="call",
                    assignee="manager",
                    template="order_stage_call",
                )
            )
        elif stage.notify:
            actions.append(
                NotifyCustomer(
                    action="notify_customer",
                    template=stage.template,
                    channels=stage.channels,
                    quiet_hours=stage.quiet_hours,
                    choices=stage.choices,
                )
            )
        if stage.rating:
            actions.append(RequestRating(action="request_rating"))
        if actions:
            rules.append(
                Rule.model_validate(
                    {
                        "name": f"order stage: {stage_id}",
                        "on": "order.stage_changed",
                        "if": f"after == {stage_id!r}",
                        "do": actions,
                    }
                )
            )
        for choice in stage.choices:
            if choice.task:
                rules.append(
                    Rule.model_validate(
                        {
                            "name": f"order choice: {stage_id}/{choice.id}",
                            "on": "order.answered",
                            "if": f"stage == {stage_id!r} and choice == {choice.id!r}",
                            "do": [
                                CreateTask(
                                    action="create_task",
                                    kind="call",
                                    assignee="manager",
                                    template="order_choice_call",
                                )
                            ],
                        }
                    )
                )
    return rules


def categories_of(settings: Settings) -> list[CategoryConfig]:
    """The categories in force: the config's, else the shipped ones."""
    return list(settings.categories) or default_categories()


def category_titles(settings: Settings, lang: str) -> dict[str, str]:
    """Each category's title in ``lang`` (else the Russian one, else its id), by id."""
    return {c.id: c.title.get(lang) or c.title.get("ru") or c.id for c in categories_of(settings)}


def seed_examples_of(settings: Settings) -> list[tuple[str, str]]:
    """The shipped labelled appeals (text, category) of the categories in force, which a new
    desk's model starts from; none when ``router.seed_examples`` is off."""
    if not settings.router.seed_examples:
        return []
    known = {c.id for c in categories_of(settings)}
    return [(text, category) for text, category in default_seed_examples() if category in known]


@lru_cache(maxsize=1)
def default_seed_examples() -> tuple[tuple[str, str], ...]:
    """The labelled appeals shipped with the desk (``router/seed_examples.yaml``), read once."""
    path = Path(router.__file__).parent / "seed_examples.yaml"
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return tuple((str(text), str(category)) for category, texts in data.items() for text in texts)


def reference_problems(data: dict[str, Any]) -> list[str]:
    """Checks across sections (unknown teams, duplicate ids) on raw or validated data."""

    def items(key: str) -> list[dict[str, Any]]:
        value = data.get(key)
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    problems: list[str] = []
    team_ids = [str(t.get("id")) for t in items("teams")]
    problems += _duplicates("teams", team_ids)
    problems += _duplicates("categories", [str(c.get("id")) for c in items("categories")])
    known = set(team_ids)
    for i, category in enumerate(items("categories")):
        team = category.get("team")
        if team is not None and team not in known:
            problems.append(f"categories.{i}.team: unknown team '{team}'")
    for i, agent in enumerate(items("agents")):
        teams = agent.get("teams")
        for team in teams if isinstance(teams, list) else []:
            if team not in known:
                problems.append(f"agents.{i}.teams: unknown team '{team}'")
    agent_refs = {str(a.get("name")) for a in items("agents")} | {
        str(a["telegram_id"]) for a in items("agents") if a.get("telegram_id") is not None
    }
    for i, team in enumerate(items("teams")):
        lead = team.get("lead")
        if lead is not None and str(lead).strip() not in agent_refs:
            problems.append(f"teams.{i}.lead: unknown agent '{lead}' (a name or Telegram id)")
    tg_ids = [str(a["telegram_id"]) for a in items("agents") if a.get("telegram_id") is not None]
    problems += _duplicates("agents", tg_ids, what="telegram_id")
    api = data.get("api")
    tokens = api.get("tokens") if isinstance(api, dict) else None
    names = (
        [str(t.get("name")) for t in tokens if isinstance(t, dict)]
        if isinstance(tokens, list)
        else []
    )
    problems += _duplicates("api.tokens", names, what="name")
    return problems


def _duplicates(section: str, values: list[str], what: str = "id") -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value in seen:
            out.append(f"{section}: duplicate {what} '{value}'")
        seen.add(value)
    return out


def config_path(environ: dict[str, str] | None = None) -> Path | None:
    """The YAML file to read: ``DESK_CONFIG``, else ``appeal-desk.yaml`` when it exists."""
    env = os.environ if environ is None else environ
    named = env.get("DESK_CONFIG")
    if named:
        return Path(named)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(path: Path | None = None, *, use_default_path: bool = True) -> Settings:
    """Read and validate the settings; every problem raises one ``ConfigError`` listing them all."""
    if path is None and use_default_path:
        path = config_path()
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = validation_problems(exc, path)
        source = str(path) if path is not None else "settings"
        for line in reference_problems(data):
            if f"{source}:{line}" not in problems:
                problems.append(f"{source}:{line}")
        raise ConfigError(problems) from None
