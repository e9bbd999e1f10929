"""The bare relay for bench/relay.py: every private message copied into one group, nothing else.

    python -m bench.relay_bot API_URL TOKEN GROUP_ID

An aiogram 3 bot in long-polling mode against the Bot API at API_URL (the fake of
bench/fakes/telegram.py in the benchmark): one handler copies each private message into
GROUP_ID with ``copyMessage``. It stores nothing, keeps no state and handles updates
concurrently, as aiogram's ``start_polling`` does by default (a task per update). The least a
bot can do to bring a customer's message to the staff group: the ceiling the desk is measured
against. SIGTERM or Ctrl-C stops the polling (aiogram's own signal handling) and the process
exits with 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message

log = logging.getLogger("bench.relay_bot")


def dispatcher(group_id: int) -> Dispatcher:
    """A dispatcher whose one handler copies private messages into ``group_id``."""
    dp = Dispatcher()

    @dp.message(F.chat.type == "private")
    async def relay(message: Message) -> None:
        await message.copy_to(group_id)

    return dp


async def run(api_url: str, token: str, group_id: int) -> None:
    """Poll and relay until SIGTERM/SIGINT (``start_polling`` stops on both)."""
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    # start_polling closes the bot's session when it returns.
    await dispatcher(group_id).start_polling(bot)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.relay_bot API_URL TOKEN GROUP_ID``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    api_url, token, group = args
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(run(api_url, token, int(group)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
