"""The audit that ends every drill: nothing lost, nothing stored twice, nothing sent twice.

It reads only the database (through the ORM, already connected by the caller) and what the fake
Telegram recorded; it trusts none of the desk's own bookkeeping beyond the outbox rows, which are
the desk's decisions of what to say. Three checks:

* inbound: every accepted message (by its external id) is stored exactly once, and nothing
  that was never sent is stored;
* outbound: every outbox row for Telegram reached Telegram exactly once (counted in what the
  fake received in that chat with that text), and nothing reached Telegram that no row asked for;
* order: in each chat, the first copies arrived in the order of the rows (the order the desk
  decided to say them).

A send whose outcome was unknowable (the answer timed out after Telegram accepted it, or the
process died between Telegram's answer and the commit) may legitimately arrive twice: Telegram
has no idempotency key. The caller passes those as ``in_doubt`` and a duplicate is forgiven only
there; every other duplicate is a defect.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from bench.fakes.telegram import SentMessage
from models import Direction, Message, OutboxItem, OutboxStatus

SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup"})
InDoubt = tuple[str, str]  # (chat address, text)


@dataclass
class AuditReport:
    """What the audit found; ``ok`` when nothing was lost, doubled or reordered."""

    inbound_expected: int = 0
    inbound_stored: int = 0
    inbound_missing: list[str] = field(default_factory=list)
    inbound_doubled: list[str] = field(default_factory=list)
    inbound_unexpected: list[str] = field(default_factory=list)
    outbound_rows: int = 0
    outbound_delivered: int = 0
    outbound_undelivered: list[int] = field(default_factory=list)
    outbound_missing: list[InDoubt] = field(default_factory=list)
    outbound_doubled: list[InDoubt] = field(default_factory=list)
    outbound_forgiven: list[InDoubt] = field(default_factory=list)
    outbound_unasked: list[InDoubt] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not (
            self.inbound_missing
            or self.inbound_doubled
            or self.inbound_unexpected
            or self.outbound_undelivered
            or self.outbound_missing
            or self.outbound_doubled
            or self.outbound_unasked
            or self.out_of_order
        )

    def summary(self) -> str:
        """One paragraph for a drill's output."""
        lines = [
            f"inbound   {self.inbound_stored}/{self.inbound_expected} stored once; "
            f"missing {len(self.inbound_missing)}, doubled {len(self.inbound_doubled)}, "
            f"unexpected {len(self.inbound_unexpected)}",
            f"outbound  {self.outbound_delivered}/{self.outbound_rows} delivered once; "
            f"undelivered rows {len(self.outbound_undelivered)}, "
            f"missing {len(self.outbound_missing)}, doubled {len(self.outbound_doubled)} "
            f"(+{len(self.outbound_forgiven)} in doubt, forgiven), "
            f"unasked {len(self.outbound_unasked)}, out of order {len(self.out_of_order)}",
            f"verdict   {'OK' if self.ok else 'FAILED'}",
        ]
        for name in (
            "inbound_missing",
            "inbound_doubled",
            "inbound_unexpected",
            "outbound_undelivered",
            "outbound_missing",
            "outbound_doubled",
            "outbound_unasked",
            "out_of_order",
        ):
            found = getattr(self, name)
            if found:
                lines.append(f"  {name}: {found[:5]}{' …' if len(found) > 5 else ''}")
        return "\n".join(lines)


async def audit(
    accepted: Collection[str],
    sent: Iterable[SentMessage],
    *,
    channel: str = "telegram",
    in_doubt: Collection[InDoubt] = (),
) -> AuditReport:
    """Check the database against the accepted inbound ids and the fake's record of sends.

    ``accepted``: external ids of every inbound message the channel got an acknowledgement
    for. ``sent``: the fake Telegram's ``sent`` list. ``in_doubt``: sends whose outcome the
    desk could not know (see the module docstring).
    """
    report = AuditReport(inbound_expected=len(set(accepted)))
    await _audit_inbound(report, set(accepted), channel)
    await _audit_outbound(report, list(sent), channel, Counter(in_doubt))
    return report


async def _audit_inbound(report: AuditReport, accepted: set[str], channel: str) -> None:
    stored = Counter(
        await Message.filter(channel=channel, direction=Direction.IN).values_list(
            "external_id", flat=True
        )
    )
    report.inbound_stored = sum(1 for key in accepted if stored[key] == 1)
    report.inbound_missing = sorted(key for key in accepted if stored[key] == 0)
    report.inbound_doubled = sorted(key for key, n in stored.items() if n > 1 and key)
    report.inbound_unexpected = sorted(k for k in stored if k not in accepted and k is not None)


async def _audit_outbound(
    report: AuditReport, sent: list[SentMessage], channel: str, in_doubt: Counter[InDoubt]
) -> None:
    rows = await OutboxItem.filter(channel=channel).order_by("id")
    report.outbound_rows = len(rows)
    report.outbound_undelivered = [r.id for r in rows if r.status is not OutboxStatus.SENT]
    asked: Counter[InDoubt] = Counter((r.address, str(r.payload.get("text", ""))) for r in rows)
    chats = {address for address, _ in asked}
    arrivals: defaultdict[InDoubt, list[int]] = defaultdict(list)
    for position, message in enumerate(sent):
        if message.method in SEND_METHODS and str(message.chat_id) in chats:
            arrivals[(str(message.chat_id), message.body or "")].append(position)
    for key, wanted in asked.items():
        got = len(arrivals.get(key, ()))
        if got < wanted:
            report.outbound_missing += [key] * (wanted - got)
        extra = got - wanted
        forgiven = min(max(extra, 0), in_doubt[key])
        report.outbound_forgiven += [key] * forgiven
        report.outbound_doubled += [key] * (max(extra, 0) - forgiven)
        report.outbound_delivered += min(got, wanted)
    report.outbound_unasked = sorted(k for k in arrivals if k not in asked)
    _audit_order(report, rows, arrivals)


def _audit_order(
    report: AuditReport, rows: list[OutboxItem], arrivals: dict[InDoubt, list[int]]
) -> None:
    """In each chat, the n-th row with a text took that text's n-th arrival; those positions
    must grow with the row ids."""
    taken: Counter[InDoubt] = Counter()
    last_by_chat: dict[str, tuple[int, int]] = {}
    for row in rows:
        key = (row.address, str(row.payload.get("text", "")))
        positions = arrivals.get(key, [])
        index = taken[key]
        taken[key] += 1
        if index >= len(positions):
            continue  # missing: reported already
        position = positions[index]
        previous = last_by_chat.get(row.address)
        if previous is not None and position < previous[1]:
            report.out_of_order.append(f"outbox {row.id} before outbox {previous[0]}")
        last_by_chat[row.address] = (row.id, position)


async def audit_mail(accepted: Collection[str], captured_ids: Iterable[str]) -> AuditReport:
    """The same audit for email: inbound by Message-ID; outbound by the Message-ID of each
    sent row against the Message-IDs the SMTP server accepted (once each, none unasked)."""
    report = AuditReport(inbound_expected=len(set(accepted)))
    await _audit_inbound(report, set(accepted), "email")
    rows = await OutboxItem.filter(channel="email").order_by("id")
    report.outbound_rows = len(rows)
    report.outbound_undelivered = [r.id for r in rows if r.status is not OutboxStatus.SENT]
    got = Counter(captured_ids)
    for row in rows:
        key = (row.address, row.external_id or "")
        n = got.pop(row.external_id or "", 0)
        report.outbound_delivered += min(n, 1)
        report.outbound_missing += [key] if n == 0 and row.status is OutboxStatus.SENT else []
        report.outbound_doubled += [key] * max(n - 1, 0)
    report.outbound_unasked = sorted(("?", mid) for mid in got)
    return report
