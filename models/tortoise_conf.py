"""Tortoise config for the ``tortoise`` CLI (``makemigrations``); reads ``DESK_DATABASE_URL``."""

import os

from models.db import tortoise_config

TORTOISE_ORM = tortoise_config(os.environ.get("DESK_DATABASE_URL", "sqlite://appeal-desk.db"))
