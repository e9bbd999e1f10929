"""Email: the mailbox read over IMAP (mailbox.py), each mail parsed (parse.py) and its text made
readable (text.py) into an InboundMessage; mails out over SMTP, threaded by Message-ID (mail.py)."""
