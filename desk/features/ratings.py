"""Service-quality ratings (seed 004): the request with its five buttons or links, the score
(one per appeal or order per day, the last one stands), the optional comment, and the events
that automation turns into alerts, tasks and thank-yous."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from channels.base import InboundMessage
from desk.appeals.event_types import RatingCommented, RatingReceived, RatingRequested
from desk.appeals.events import EventBus
from desk.config.errors import DeskError, InvalidInput
from desk.config.settings import Settings
from desk.config.texts import LANGUAGES, Texts
from desk.outbound.notify import Button, Notifier, Policy, Sent
from models import Agent, Appeal, Customer, Order, Rating, RatingRequest, RatingState, parse_id
from router.automation import QuietHours

RATING_PREFIX = "rt"  # a score button: rt:<request id>:<score>
SKIP_PREFIX = "rs"  # «Пропустить» under the comment prompt: rs:<request id>
FACES = {1: "😡", 2: "😕", 3: "😐", 4: "🙂", 5: "😍"}
SCORES = range(1, 6)
NO_RATING_TAGS = frozenset({"spam", "merged"})  # appeals closed as these are never rated
COMMENT_LIMIT = 2000


class RatingClosed(DeskError):
    """The request's time is over: nothing is recorded."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"rating request {request_id} has expired: the rating was not recorded")
        self.request_id = request_id


class UnknownRequest(DeskError):
    """No such request for this customer (an old button after a merge, a forged press)."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"rating request {request_id} not found for this customer")
        self.request_id = request_id


class Skipped(DeskError):
    """Why no request was sent (spam, one already open, nobody reachable)."""


def score_action(request_id: int, score: int) -> str:
    """The button's action for one score."""
    return f"{RATING_PREFIX}:{request_id}:{score}"


def is_rating_action(action: str) -> bool:
    """Whether a button's action belongs to the rating flow."""
    return action.startswith((f"{RATING_PREFIX}:", f"{SKIP_PREFIX}:"))


def parse_action(action: str) -> tuple[int, int] | None:
    """(request id, score) of ``rt:<id>:<score>``; None for anything else."""
    prefix, _, rest = action.partition(":")
    raw_request, _, raw_score = rest.partition(":")
    request, score = parse_id(raw_request), parse_id(raw_score)
    if prefix != RATING_PREFIX or request is None or score is None:
        return None
    return request, score


@dataclass(frozen=True, slots=True)
class Recorded:
    """A stored score: the day's rating row and whether the score differs from before."""

    rating: Rating
    request: RatingRequest
    changed: bool


class Ratings:
    """Sends rating requests and records what customers answer."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        events: EventBus,
        texts: Texts,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings.ratings
        self._zone = ZoneInfo(settings.company.timezone)
        self._notifier = notifier
        self._events = events
        self._texts = texts
        self._clock = clock

    # -- the request ----------------------------------------------------------------------------

    async def request(
        self,
        customer: Customer,
        *,
        appeal: Appeal | None = None,
        order: Order | None = None,
        template: str = "rating_request",
        policy: Policy = "conversation",
        quiet: QuietHours | None = None,
        actor: str = "automation",
    ) -> tuple[RatingRequest, Sent]:
        """Ask ``customer`` to rate an appeal or an order; call inside the event's transaction.
        ``Skipped`` says why nothing was sent."""
        if appeal is not None and NO_RATING_TAGS & {t.casefold() for t in appeal.tags}:
            raise Skipped("the appeal was closed as spam or merged")
        if appeal is not None:
            subject = {"appeal_id": appeal.id}
        elif order is not None:
            subject = {"order_id": order.id}
        else:
            raise Skipped("nothing to rate")
        now = self._clock()
        if await RatingRequest.filter(
            **subject, answered_at__isnull=True, expires_at__gt=now
        ).exists():
            raise Skipped("a rating request for it is still open")
        request = await RatingRequest.create(
            customer_id=customer.id,
            expires_at=now + timedelta(days=self._settings.valid_days),
            created_at=now,
            **subject,
        )
        buttons = [
            Button(
                dict.fromkeys(LANGUAGES, f"{score} {FACES[score]}"),
                score_action(request.id, score),
            )
            for score in SCORES
        ]
        sent = await self._notifier.notify(
            customer,
            template,
            appeal=appeal,
            policy=policy,
            quiet=quiet,
            values={
                "valid_days": self._settings.valid_days,
                "order_number": order.external_id if order is not None else "",
            },
            buttons=buttons,
            columns=len(buttons),
            actor=actor,
            call_if_unreachable=False,
        )
        if sent.result != "queued":
            await request.delete()
            raise Skipped("the customer cannot be reached")
        request.channel = sent.channel
        await request.save(update_fields=["channel"])
        if appeal is not None:
            appeal.rating_state = RatingState.REQUESTED
            await appeal.save(update_fields=["rating_state", "updated_at"])
        await self._events.emit(
            RatingRequested(
                actor=actor,
                appeal=appeal,
                customer=customer,
                request_id=request.id,
                channel=sent.channel,
                order_id=order.id if order is not None else None,
            )
        )
        return request, sent

    # -- the answer -----------------------------------------------------------------------------

    async def rate(
        self,
        request_id: int,
        score: int,
        *,
        via: str,
        customer_id: int | None = None,
        comment: str | None = None,
        reply_to: tuple[str, str] | None = None,
    ) -> Recorded:
        """Record a score (and, from the feedback page, a comment) in its own transaction.

        ``customer_id`` is the one who pressed (a chat button must be the addressee's own);
        ``reply_to`` (channel, address) is the chat where the next message is the comment.
        """
        if score not in SCORES:
            raise InvalidInput(f"a score is 1 to 5, not {score}")
        async with in_transaction():
            request = await RatingRequest.get_or_none(id=request_id)
            if request is None or (customer_id is not None and request.customer_id != customer_id):
                raise UnknownRequest(request_id)
            now = self._clock()
            if now >= request.expires_at:
                raise RatingClosed(request_id)
            customer = await Customer.get(id=request.customer_id)
            appeal = await Appeal.get_or_none(id=request.appeal_id) if request.appeal_id else None
            rating, changed = await self._store(request, appeal, score, comment, via, now)
            request.answered_at = request.answered_at or now
            fields = ["answered_at"]
            awaiting = request.comment_until is not None and request.comment_until > now
            prompt = reply_to is not None and not awaiting
            if reply_to is not None:
                request.comment_channel = reply_to[0]
                request.comment_until = now + timedelta(minutes=self._settings.comment_minutes)
                fields += ["comment_channel", "comment_until"]
            await request.save(update_fields=fields)
            if appeal is not None and appeal.rating_state is not RatingState.RATED:
                appeal.rating_state = RatingState.RATED
                await appeal.save(update_fields=["rating_state", "updated_at"])
            agent = await Agent.get_or_none(id=rating.agent_id) if rating.agent_id else None
            if changed:
                await self._events.emit(
                    RatingReceived(
                        actor="customer",
                        appeal=appeal,
                        customer=customer,
                        score=score,
                        comment=rating.comment,
                        via=via,
                        agent=agent.name if agent is not None else "",
                        request_id=request.id,
                        rating_id=rating.id,
                        order_id=request.order_id,
                        changed=changed,
                    )
                )
            elif comment:
                await self._commented(request, rating, appeal, customer, via)
            if prompt and reply_to is not None:
                await self._notifier.notify(
                    customer,
                    "rating_comment_prompt",
                    appeal=appeal,
                    values={"score": score},
                    buttons=[Button(self._skip_label(), f"{SKIP_PREFIX}:{request.id}")],
                    actor="customer",
                    call_if_unreachable=False,
                    to=reply_to,
                )
        return Recorded(rating, request, changed)

    async def _store(
        self,
        request: RatingRequest,
        appeal: Appeal | None,
        score: int,
        comment: str | None,
        via: str,
        now: datetime,
    ) -> tuple[Rating, bool]:
        """The day's rating of the appeal or order, created or replaced (the last one stands)."""
        day = self.day_of(now)
        subject = (
            {"appeal_id": request.appeal_id}
            if request.appeal_id is not None
            else {"order_id": request.order_id}
        )
        rating = await Rating.filter(**subject, day=day).first()
        snapshot = {
            "request_id": request.id,
            "via": via,
            "channel": appeal.channel if appeal is not None else request.channel,
            "agent_id": appeal.assignee_id if appeal is not None else None,
            "category": appeal.category if appeal is not None else None,
            "team": appeal.team if appeal is not None else None,
        }
        text = (comment or "").strip()[:COMMENT_LIMIT]
        if rating is None:
            rating = await Rating.create(
                customer_id=request.customer_id,
                score=score,
                comment=text,
                day=day,
                created_at=now,
                **subject,
                **snapshot,
            )
            return rating, True
        changed = rating.score != score
        rating.score = score
        if comment is not None or changed:
            rating.comment = text  # a new score from a chat starts without a comment
        for key, value in snapshot.items():
            setattr(rating, key, value)
        await rating.save()
        return rating, changed

    # -- the comment ----------------------------------------------------------------------------

    async def take_comment(self, msg: InboundMessage, customer: Customer) -> Appeal | bool | None:
        """Whether an inbound message is the comment after a button press; call inside the
        intake transaction. Returns the rated appeal (or True for an order's rating) when the
        message was taken, None when it is an ordinary message. A repeat delivery of a taken
        message is taken again and changes nothing."""
        channel = msg.channel.value
        ref = f"{channel}:{msg.external_id}"
        # One query on every inbound message: a comment awaited here, or this one taken before.
        awaited = Q(comment_channel=channel, comment_until__gt=self._clock())
        request = await (
            RatingRequest.filter(Q(comment_ref=ref) | awaited, customer_id=customer.id)
            .order_by("-answered_at")
            .first()
        )
        if request is not None and request.comment_ref == ref:
            return await self._appeal_of(request) or True
        text = msg.text.strip()
        if request is None or not text:
            return None
        request.comment_until = None
        request.comment_ref = ref
        await request.save(update_fields=["comment_until", "comment_ref"])
        appeal = await self._appeal_of(request)
        if text.casefold().strip(" .!«»\"'") in self._skip_words():
            return appeal or True
        rating = await Rating.filter(request_id=request.id).order_by("-updated_at", "-id").first()
        if rating is None:
            return appeal or True
        rating.comment = text[:COMMENT_LIMIT]
        await rating.save(update_fields=["comment", "updated_at"])
        await self._commented(request, rating, appeal, customer, channel)
        await self._notifier.notify(
            customer,
            "rating_comment_thanks",
            appeal=appeal,
            actor="customer",
            call_if_unreachable=False,
            to=(channel, msg.address),
        )
        return appeal or True

    async def press(
        self, action: str, *, channel: str, address: str, customer_id: int | None, lang: str
    ) -> tuple[str, bool]:
        """A chat button under a request (a score) or under the comment prompt («Пропустить»):
        the notice to show the customer, and whether it is a warning."""
        string = self._texts.string
        if customer_id is None:
            return string("rating.unknown", lang), True
        if action.startswith(f"{SKIP_PREFIX}:"):
            request_id = parse_id(action.partition(":")[2])
            if request_id is not None:
                await RatingRequest.filter(
                    id=request_id, customer_id=customer_id, comment_until__isnull=False
                ).update(comment_until=None)
            return string("rating.skipped", lang), False
        parsed = parse_action(action)
        if parsed is None:
            return string("rating.unknown", lang), True
        try:
            await self.rate(
                *parsed, via=channel, customer_id=customer_id, reply_to=(channel, address)
            )
        except RatingClosed:
            return string("rating.closed", lang), True
        except (UnknownRequest, InvalidInput):
            return string("rating.unknown", lang), True
        return string("rating.saved", lang, score=parsed[1]), False

    async def _commented(
        self,
        request: RatingRequest,
        rating: Rating,
        appeal: Appeal | None,
        customer: Customer,
        via: str,
    ) -> None:
        await self._events.emit(
            RatingCommented(
                actor="customer",
                appeal=appeal,
                customer=customer,
                score=rating.score,
                comment=rating.comment,
                via=via,
                request_id=request.id,
                rating_id=rating.id,
                order_id=request.order_id,
            )
        )

    # -- helpers --------------------------------------------------------------------------------

    def day_of(self, at: datetime) -> date:
        """The rating day: the date in the company's time zone."""
        return at.astimezone(self._zone).date()

    def _skip_words(self) -> set[str]:
        """«пропустить», "skip", … in every language (strings: ``rating.skip_words``)."""
        words = "|".join(self._texts.string("rating.skip_words", lang) for lang in LANGUAGES)
        return {w.strip().casefold() for w in words.split("|") if w.strip()}

    def _skip_label(self) -> dict[str, str]:
        return {lang: self._texts.string("rating.skip", lang) for lang in LANGUAGES}

    @staticmethod
    async def _appeal_of(request: RatingRequest) -> Appeal | None:
        return await Appeal.get_or_none(id=request.appeal_id) if request.appeal_id else None
