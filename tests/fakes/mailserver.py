"""Real mail servers for the email-channel tests: Dovecot (IMAP) and an aiosmtpd capture (SMTP).

Fixtures (enable them with ``pytest_plugins = ["tests.fakes.mailserver"]`` in the root conftest):

- ``dovecot`` (session): a private Dovecot instance on 127.0.0.1, plaintext login, no TLS,
  maildirs and users (a passwd-file per user) in a temp folder. Skips when Dovecot is missing.
- ``mailbox``: a fresh IMAP account for the test, a :class:`MailAccount` whose helpers
  ``deliver`` (APPEND into INBOX, as if a customer's mail arrived), ``fetch_all``, ``flags`` and
  ``uidvalidity`` talk to Dovecot over their own short connections (stdlib imaplib in a thread).
- ``smtp_capture``: an SMTP server in the test's event loop that records every message sent to
  it, a :class:`SmtpCapture` with switches to refuse mail temporarily.

Importing this module has no side effects: servers start only when a fixture asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import imaplib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest

DOVECOT_START_TIMEOUT_S = 10.0
MAIL_DOMAIN = "desk.test"

_CRLF = re.compile(rb"\r\n|\r|\n")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_UIDVALIDITY = re.compile(rb"\bUIDVALIDITY (\d+)")
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


# --------------------------------------------------------------------------------------- Dovecot


def _find_dovecot() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _users() -> tuple[str, str, str, int, int]:
    """(internal user, internal group, login user, mail uid, mail gid) for Dovecot's processes.

    As root (CI), Dovecot drops privileges to the users Debian's package creates, and refuses to
    give mail access to uid 0, so the mail files belong to ``dovecot``. As anyone else, every
    process runs as that user (a "rootless" Dovecot)."""
    import grp
    import pwd

    if os.geteuid() == 0:
        mail = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")  # KeyError if the package's users are missing
        return "dovecot", grp.getgrgid(mail.pw_gid).gr_name, "dovenull", mail.pw_uid, mail.pw_gid
    # Not getpass.getuser(): $USER can name someone else (su, setpriv, sudo -E).
    me = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return me, group, me, os.geteuid(), os.getegid()


@dataclass
class Dovecot:
    """A running private Dovecot: IMAP on ``host``:``port``, a passwd-file per user in
    ``passwd_dir``."""

    host: str
    port: int
    root: Path
    config: Path
    passwd_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def add_user(self, user: str, password: str) -> None:
        """Add (or replace) an account; takes effect at once, no restart.

        One passwd-file per user (``passwd_dir/<user>``): Dovecot stats a passwd-file at most
        once a second, so a line appended to a shared file can be missed by the next login."""
        if not _USER_NAME.fullmatch(user):
            raise ValueError(f"user name {user!r}: use letters, digits and . _ @ + -")
        if any(char in password for char in ":\r\n"):
            raise ValueError("passwords must not contain ':' or line breaks")
        final = self.passwd_dir / user
        partial = self.passwd_dir / f".{user}.tmp"
        partial.write_text(f"{user}:{{PLAIN}}{password}\n", encoding="utf-8")
        partial.chmod(0o644)
        partial.replace(final)  # atomic: a login never reads half a file

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def _dovecot_config(root: Path, port: int, passwd_dir: Path, log_path: Path) -> str:
    internal_user, internal_group, login_user, uid, gid = _users()
    return f"""\
# Written by tests/fakes/mailserver.py: a private, throwaway Dovecot for the tests.
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-tests-{port}
log_path = {log_path}
info_log_path = {log_path}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: one failed login must not slow down every later login from 127.0.0.1.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _wait_greeting(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(200).startswith(b"* OK"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"dovecot did not greet on port {port} within {DOVECOT_START_TIMEOUT_S}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill Dovecot's master and its children: they are alone in the process group the master
    leads (``start_new_session``). SIGKILL, because a SIGTERMed master sleeps a fixed second
    while its children close their listeners; nothing of this throwaway instance is kept."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _start_dovecot(binary: str, root: Path) -> Dovecot:
    *_, uid, gid = _users()
    passwd_dir = root / "passwd"
    passwd_dir.mkdir(mode=0o755)
    home = root / "home"
    home.mkdir()
    os.chown(home, uid, gid)  # the per-user processes create the maildirs in there
    log_path = root / "dovecot.log"
    errors: list[str] = []
    for _attempt in range(3):  # a free port can be taken by someone else before Dovecot binds it
        port = _free_port()
        config = root / "dovecot.conf"
        config.write_text(_dovecot_config(root, port, passwd_dir, log_path), encoding="utf-8")
        with (root / "dovecot.out").open("ab") as out:
            proc = subprocess.Popen(
                [binary, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for _stop
            )
        try:
            _wait_greeting(port, proc, time.monotonic() + DOVECOT_START_TIMEOUT_S)
        except RuntimeError as exc:
            _stop(proc)
            out_text = (root / "dovecot.out").read_text(errors="replace")
            log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
            errors.append(f"{exc}\n{out_text}{log_text}")
            if "in use" not in out_text + log_text:
                break
            continue
        return Dovecot("127.0.0.1", port, root, config, passwd_dir, log_path, proc)
    raise RuntimeError("could not start dovecot:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot for the whole session (about 0.1 s to start), removed at the end."""
    binary = _find_dovecot()
    if binary is None:
        pytest.skip("dovecot is not installed: apt-get install dovecot-imapd")
    # Not pytest's tmp_path: that one is 0700 root, and Dovecot's unprivileged processes must
    # reach the passwd-file and the maildirs. Short too: Dovecot's sockets live in there.
    root = Path(tempfile.mkdtemp(prefix="dovecot-"))
    root.chmod(0o755)
    try:
        server = _start_dovecot(binary, root)
        try:
            yield server
        finally:
            _stop(server.process)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------- IMAP accounts


def _as_crlf_bytes(raw: bytes | EmailMessage) -> bytes:
    if isinstance(raw, EmailMessage):
        return raw.as_bytes(policy=email.policy.SMTP)
    return _CRLF.sub(b"\r\n", raw)


def _check(typ: str, data: Any, what: str) -> Any:
    if typ != "OK":
        raise RuntimeError(f"IMAP {what} failed: {typ} {data!r}")
    return data


def _fetch_items(data: list[Any]) -> list[tuple[bytes, bytes | None]]:
    """imaplib's FETCH answer as (header line, literal or None) pairs."""
    items: list[tuple[bytes, bytes | None]] = []
    for part in data:
        if isinstance(part, tuple):
            items.append((part[0], part[1]))
        elif isinstance(part, bytes) and part.strip() not in (b"", b")"):
            items.append((part, None))
    return items


@dataclass
class MailAccount:
    """One IMAP account on the test Dovecot. ``user``/``password`` log in; ``address`` is the
    account's email address (what customers write to)."""

    host: str
    port: int
    user: str
    password: str
    address: str

    def _session(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            _check(*imap.login(self.user, self.password), "LOGIN")
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def _deliver(self, raw: bytes, flags: tuple[str, ...], mailbox: str) -> int:
        imap = self._session()
        try:
            flag_list = f"({' '.join(flags)})" if flags else None
            typ, data = imap.append(mailbox, flag_list, None, raw)
            _check(typ, data, "APPEND")
            found = _APPENDUID.search(data[0] or b"")
            if found is None:
                raise RuntimeError(f"no APPENDUID in the APPEND answer: {data!r}")
            return int(found.group(2))
        finally:
            imap.logout()

    async def deliver(
        self, raw: bytes | EmailMessage, *, flags: tuple[str, ...] = (), mailbox: str = "INBOX"
    ) -> int:
        """APPEND a mail (as a customer's mail arriving) and return its UID. Line ends become
        CRLF, as IMAP stores them: FETCH gives back exactly ``_as_crlf_bytes(raw)``."""
        return await asyncio.to_thread(self._deliver, _as_crlf_bytes(raw), flags, mailbox)

    def _fetch(self, items: str, mailbox: str) -> list[tuple[int, bytes, bytes | None]]:
        imap = self._session()
        try:
            _check(*imap.select(mailbox, readonly=True), "SELECT")
            typ, data = imap.uid("FETCH", "1:*", items)
            found: list[tuple[int, bytes, bytes | None]] = []
            for head, literal in _fetch_items(_check(typ, data, "FETCH")):
                uid = _UID.search(head)
                if uid is not None:
                    found.append((int(uid.group(1)), head, literal))
            return sorted(found, key=lambda item: item[0])
        finally:
            imap.logout()

    async def fetch_all(self, mailbox: str = "INBOX") -> list[bytes]:
        """Every message's raw bytes, by ascending UID (BODY.PEEK: does not set \\Seen)."""
        found = await asyncio.to_thread(self._fetch, "(UID BODY.PEEK[])", mailbox)
        return [literal or b"" for _, _, literal in found]

    async def flags(self, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message (``\\Recent`` left out: it depends on who looked)."""
        found = await asyncio.to_thread(self._fetch, "(UID FLAGS)", mailbox)
        result: dict[int, set[str]] = {}
        for uid, head, _ in found:
            match = _FLAGS.search(head)
            names = match.group(1).decode().split() if match else []
            result[uid] = {name for name in names if name != "\\Recent"}
        return result

    def _uidvalidity(self, mailbox: str) -> int:
        imap = self._session()
        try:
            typ, data = imap.status(mailbox, "(UIDVALIDITY)")
            found = _UIDVALIDITY.search(_check(typ, data, "STATUS")[0] or b"")
            if found is None:
                raise RuntimeError(f"no UIDVALIDITY in the STATUS answer: {data!r}")
            return int(found.group(1))
        finally:
            imap.logout()

    async def uidvalidity(self, mailbox: str = "INBOX") -> int:
        return await asyncio.to_thread(self._uidvalidity, mailbox)


_account_numbers = itertools.count(1)


@pytest.fixture
def mailbox(dovecot: Dovecot) -> MailAccount:
    """A fresh, empty IMAP account on the session's Dovecot for this test."""
    user = f"support{next(_account_numbers)}-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    dovecot.add_user(user, password)
    return MailAccount(dovecot.host, dovecot.port, user, password, f"{user}@{MAIL_DOMAIN}")


# ----------------------------------------------------------------------------------------- SMTP


@dataclass
class CapturedMail:
    """One message the capture server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class _Refusal:
    code: int
    text: str
    at: Literal["RCPT", "DATA"]
    remaining: int | None = None  # None: until ``until``
    until: float = 0.0


class SmtpCapture:
    """An aiosmtpd handler that keeps what it accepts in ``messages``; see ``smtp_capture``."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.messages: list[CapturedMail] = []
        self.refused = 0  # how many RCPT/DATA commands the fault switches refused
        self._refusals: list[_Refusal] = []
        self._arrived = asyncio.Condition()

    # -- fault switches

    def refuse_next(
        self,
        n: int = 1,
        code: int = 451,
        text: str = "4.3.0 Temporary failure, try again later",
        *,
        at: Literal["RCPT", "DATA"] = "DATA",
    ) -> None:
        """Refuse the next ``n`` DATA commands (or RCPT commands, ``at="RCPT"``) with ``code``.

        Refused at DATA, aiosmtplib raises ``SMTPDataError`` (an ``SMTPResponseException``, with
        ``.code``); refused at RCPT, ``SMTPRecipientsRefused`` when no recipient is left."""
        self._refusals.append(_Refusal(code, text, at, remaining=n))

    def refuse_for(
        self,
        seconds: float,
        code: int = 451,
        text: str = "4.3.0 Temporary failure, try again later",
        *,
        at: Literal["RCPT", "DATA"] = "DATA",
    ) -> None:
        """Refuse every DATA (or RCPT) command for the next ``seconds``."""
        self._refusals.append(_Refusal(code, text, at, until=time.monotonic() + seconds))

    def accept_all(self) -> None:
        """Turn the fault switches off."""
        self._refusals.clear()

    def _refusal(self, stage: Literal["RCPT", "DATA"]) -> str | None:
        now = time.monotonic()
        for refusal in list(self._refusals):
            if refusal.remaining is None and refusal.until <= now:
                self._refusals.remove(refusal)
                continue
            if refusal.at != stage:
                continue
            if refusal.remaining is not None:
                refusal.remaining -= 1
                if refusal.remaining <= 0:
                    self._refusals.remove(refusal)
            self.refused += 1
            return f"{refusal.code} {refusal.text}"
        return None

    # -- aiosmtpd handler hooks

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._refusal("RCPT")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refusal = self._refusal("DATA")
        if refusal is not None:
            return refusal
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # Parsed with LF line ends, so that get_content() gives "text\n" as it was set.
        message = email.message_from_bytes(_CRLF.sub(b"\n", raw), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(
            CapturedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(raw), message)
        )
        async with self._arrived:
            self._arrived.notify_all()
        return "250 OK: queued"

    # -- waiting

    async def wait_for(self, count: int, timeout: float = 5) -> list[CapturedMail]:
        """Wait until at least ``count`` messages arrived; return them all. TimeoutError else."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.messages) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} message(s) within {timeout}s, got {len(self.messages)}"
                f" ({self.refused} refused)"
            ) from None
        return list(self.messages)


@pytest.fixture
async def smtp_capture() -> AsyncIterator[SmtpCapture]:
    """An SMTP server on 127.0.0.1 (free port) in the test's event loop, capturing messages."""
    from aiosmtpd.smtp import SMTP

    capture = SmtpCapture()
    sessions: list[SMTP] = []

    def factory() -> SMTP:
        # hostname given: the default calls socket.getfqdn(), which can stall on DNS.
        smtp = SMTP(capture, hostname="localhost", ident="appeal-desk test SMTP")
        sessions.append(smtp)
        return smtp

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, capture.host, 0)
    capture.port = int(server.sockets[0].getsockname()[1])
    try:
        yield capture
    finally:
        server.close()
        for smtp in sessions:
            transport = smtp.transport
            if transport is not None and not transport.is_closing():
                transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
        await asyncio.sleep(0)  # let the sessions' connection_lost run in this loop


def email_settings(mailbox: MailAccount, smtp: SmtpCapture) -> dict[str, Any]:
    """The ``email`` settings of a desk that reads ``mailbox`` and sends through ``smtp``."""
    return {
        "address": mailbox.address,
        "name": "Поддержка",
        "imap_host": mailbox.host,
        "imap_port": mailbox.port,
        "imap_user": mailbox.user,
        "imap_password": mailbox.password,
        "imap_tls": "none",
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_tls": "none",
        "poll_s": 0.5,
    }
