"""The one object that carries the service's parts; passed explicitly, never global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from channels.base import ChannelAdapter
from channels.stream import AppealStream
from desk.keys import TokenBook
from desk.lifecycle import Lifecycle
from desk.outbox import Outbox
from desk.settings import Settings
from desk.signing import Signer
from desk.texts import Texts


def utc_now() -> datetime:
    """The service clock."""
    return datetime.now(UTC)


@dataclass
class AppContext:
    """Settings, stream, lifecycle, outbox, adapters, texts, signer, tokens and the clock."""

    settings: Settings
    stream: AppealStream
    lifecycle: Lifecycle
    outbox: Outbox
    signer: Signer
    tokens: TokenBook
    texts: Texts = field(default_factory=Texts)
    adapters: dict[str, ChannelAdapter] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
