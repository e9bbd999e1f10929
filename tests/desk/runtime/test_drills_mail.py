"""Fault drill 5, short form: IMAP dropped mid-FETCH, SMTP refusing for a while (see
bench/drills/mail.py; ``DESK_DRILL_FULL=1`` runs the full form)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from bench.drills.mail import mail_drill
from bench.drills.proxy import CuttingProxy
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings

pytestmark = pytest.mark.backend_agnostic

FULL = bool(os.environ.get("DESK_DRILL_FULL"))


@pytest.mark.parametrize("code", [421, 451])
async def test_mail_survives_a_cut_imap_fetch_and_a_refusing_smtp_server(
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
    code: int,
) -> None:
    proxy = CuttingProxy(mailbox.host, mailbox.port)
    await proxy.start()
    # A long IMAP timeout: the reader must notice the cut connection, not wait the timeout out.
    settings = email_settings(mailbox, smtp_capture) | {"imap_port": proxy.port, "timeout_s": 300}
    try:
        await start_desk(email=settings)
        report = await mail_drill(
            mailbox.deliver,
            proxy,
            lambda: [str(m.message["Message-ID"]) for m in smtp_capture.messages],
            lambda seconds: smtp_capture.refuse_for(seconds, code=code),
            mails=40 if FULL else 6,
            refuse_s=60.0 if FULL else 4.0,
            timeout_s=400.0 if FULL else 60.0,
        )
    finally:
        await proxy.close()
    assert proxy.cuts == 1 and smtp_capture.refused > 0
    assert report.ok, report.summary()
    assert report.inbound_stored == report.inbound_expected > 0
    assert report.outbound_delivered == report.outbound_rows > 0
