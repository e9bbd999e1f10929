"""The ceiling for bench/load.py: a bare aiohttp endpoint that reads an update and says 200.

    python -m bench.ceiling PORT

Same server stack as the service's webhook (aiohttp, no access log) and the work any aiogram
bot does for every update before its handlers run: the JSON parsed and validated into
``aiogram.types.Update`` the way aiogram's own webhook handler and ``feed_raw_update`` do
(``Update.model_validate(data, context={"bot": ...})``). Invalid input gets a 400, as the
desk's webhook answers it. Nothing else: the load generator's numbers against it are the most
this machine can take through HTTP for a bot at all.
"""

from __future__ import annotations

import json
import sys

from aiogram.types import Update
from aiohttp import web

OK = b'{"ok":true}'


async def webhook(request: web.Request) -> web.Response:
    """Parse and validate the update, then acknowledge it."""
    try:
        # No Bot behind this endpoint: the context binds none (a bot's handler binds its own).
        Update.model_validate(json.loads(await request.read()), context={"bot": None})
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        return web.Response(status=400)
    return web.Response(body=OK, content_type="application/json")


def main() -> None:
    """Serve the endpoint on 127.0.0.1:PORT until killed."""
    app = web.Application()
    app.router.add_post("/telegram/webhook", webhook)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
