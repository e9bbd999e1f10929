"""Files the desk keeps itself (mail attachments, raw mails, VK files): content in the database."""

from __future__ import annotations

import hashlib

from tortoise import fields
from tortoise.models import Model

from models.lookup import parse_id

FILE_REF_PREFIX = "file:"


class StoredFile(Model):
    """One file's bytes, kept once per content (deduplicated by SHA-256)."""

    id = fields.BigIntField(primary_key=True)
    sha256 = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=255, default="")
    mime = fields.CharField(max_length=127, default="application/octet-stream")
    size = fields.BigIntField(default=0)
    content = fields.BinaryField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stored_file"

    @property
    def ref(self) -> str:
        """How an attachment refers to this file: ``file:<id>``."""
        return f"{FILE_REF_PREFIX}{self.id}"

    @classmethod
    async def keep(cls, content: bytes, *, name: str = "", mime: str = "") -> StoredFile:
        """Store ``content`` (or find it stored already); the first name and type are kept."""
        digest = hashlib.sha256(content).hexdigest()
        found = await cls.filter(sha256=digest).first()
        if found is not None:
            return found
        return await cls.create(
            sha256=digest,
            name=name[:255],
            mime=(mime or "application/octet-stream")[:127],
            size=len(content),
            content=content,
        )

    @classmethod
    async def by_ref(cls, ref: str) -> StoredFile | None:
        """The file an attachment ref names, or None when it is not a stored file."""
        file_id = parse_id(ref.removeprefix(FILE_REF_PREFIX))
        if not ref.startswith(FILE_REF_PREFIX) or file_id is None:
            return None
        return await cls.get_or_none(id=file_id)
