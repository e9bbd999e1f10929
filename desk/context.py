"""The one object that carries the service's parts; passed explicitly, never global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from channels.base import ChannelAdapter
from channels.stream import AppealStream
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.outbox import Outbox
from desk.appeals.triage import Triage
from desk.config.keys import TokenBook
from desk.config.settings import Settings
from desk.config.signing import Signer
from desk.config.texts import Texts
from desk.ops.gate import WorkGate
from desk.ops.metrics import Metrics
from desk.ops.outage import OutageWatch

if TYPE_CHECKING:
    from desk.decide.routing import Routing
    from desk.decide.sla import SlaClock
    from desk.features.answers import AnswerBook
    from desk.features.orders import Orders
    from desk.features.ratings import Ratings
    from desk.features.winback import WinBack
    from desk.outbound.chat_desk import ChatDesk
    from desk.outbound.notify import Notifier
    from desk.outbound.sms import SmsGate


def utc_now() -> datetime:
    """The service clock."""
    return datetime.now(UTC)


@dataclass
class AppContext:
    """Settings, stream, lifecycle and triage, outbox, adapters, texts, signer, tokens, clock,
    metrics, the database outage watch, the answer templates."""

    settings: Settings
    stream: AppealStream
    lifecycle: Lifecycle
    triage: Triage
    outbox: Outbox
    signer: Signer
    tokens: TokenBook
    texts: Texts = field(default_factory=Texts)
    adapters: dict[str, ChannelAdapter] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    metrics: Metrics = field(default_factory=Metrics)
    outage: OutageWatch = field(default_factory=OutageWatch)
    desks: dict[str, ChatDesk] = field(default_factory=dict)  # the bots, by platform
    routing: Routing | None = None
    sla: SlaClock | None = None
    notifier: Notifier | None = None
    orders: Orders | None = None
    ratings: Ratings | None = None
    winback: WinBack | None = None
    sms: SmsGate | None = None
    answers: AnswerBook | None = None  # the answer templates agents send (``/t``, the API)
    gate: WorkGate = field(default_factory=WorkGate)
