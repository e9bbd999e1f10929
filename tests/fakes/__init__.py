"""Fakes of external APIs and the local servers tests start: the VK API (vk.py), Dovecot and an
SMTP capture (mailserver.py). The Bot API fake is bench/fakes/telegram.py: benchmarks drive it
too, and bench/ does not import tests/."""
