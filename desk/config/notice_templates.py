"""Where the templates of notifications, staff posts and tasks live, and whether they exist.

A customer notification named ``order_shipped`` is rendered from the channel's own variant when
there is one (``telegram/order_shipped.html.j2``, ``vk/order_shipped.txt.j2``,
``email/order_shipped.txt.j2`` with ``email/order_shipped_subject.txt.j2``), else from the
plain ``notify/order_shipped.txt.j2`` that every channel can send.
"""

from __future__ import annotations

from channels.base import ChannelKind
from desk.config.texts import LANGUAGES, Texts
from router.automation import (
    AlertManagers,
    CreateTask,
    NotifyCustomer,
    NotifyStaff,
    RequestRating,
    Rule,
)

# Each customer channel's own variant of a notification: template pattern and text format.
VARIANTS: dict[str, tuple[str, str]] = {
    ChannelKind.TELEGRAM.value: ("telegram/{}.html.j2", "html"),
    ChannelKind.VK.value: ("vk/{}.txt.j2", "plain"),
    ChannelKind.EMAIL.value: ("email/{}.txt.j2", "plain"),
}
# An SMS's own short variant (``sms/ack.txt.j2``), else the generic text, shortened to the parts
# cap. Not among VARIANTS: no notification needs one, and SMS is chosen apart (notify.py).
SMS_VARIANT = ("sms/{}.txt.j2", "plain")
GENERIC = "notify/{}.txt.j2"
EMAIL_SUBJECT = "email/{}_subject.txt.j2"
STAFF = "telegram/{}.html.j2"
TASK = "tasks/{}.txt.j2"


def notice_problems(texts: Texts, name: str) -> list[str]:
    """Why notification ``name`` cannot be rendered for every channel and language (if so)."""
    missing = [
        lang
        for lang in LANGUAGES
        if not texts.exists(GENERIC.format(name), lang)
        and not all(texts.exists(p.format(name), lang) for p, _ in VARIANTS.values())
    ]
    if not missing:
        return []
    return [
        f"template '{name}' is missing for {', '.join(missing)}: add "
        f"templates/<lang>/{GENERIC.format(name)} (or one variant per channel)"
    ]


def rule_problems(texts: Texts, rule: Rule) -> list[str]:
    """The templates ``rule`` names that are not there, each with the rule's name."""
    problems: list[str] = []
    for action in rule.do:
        if isinstance(action, NotifyCustomer | RequestRating):
            found = notice_problems(texts, action.template)
        elif isinstance(action, NotifyStaff | AlertManagers | CreateTask):
            path = (TASK if isinstance(action, CreateTask) else STAFF).format(action.template)
            gaps = [lang for lang in LANGUAGES if not texts.exists(path, lang)]
            found = [f"template '{path}' is missing for {', '.join(gaps)}"] if gaps else []
        else:
            found = []
        problems += [f"rule '{rule.name}', {action.action}: {p}" for p in found]
    return problems
