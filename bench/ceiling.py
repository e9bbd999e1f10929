"""The ceiling for bench/load.py: a bare aiohttp endpoint that parses an update and says 200.

    python -m bench.ceiling PORT

Same server stack as the service's webhook (aiohttp, no access log), nothing else: the load
generator's numbers against it are the most this machine can take through HTTP at all.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

OK = b'{"ok":true}'


async def webhook(request: web.Request) -> web.Response:
    """Parse the JSON body and acknowledge it."""
    try:
        json.loads(await request.read())
    except ValueError:
        return web.Response(status=400)
    return web.Response(body=OK, content_type="application/json")


def main() -> None:
    """Serve the endpoint on 127.0.0.1:PORT until killed."""
    app = web.Application()
    app.router.add_post("/telegram/webhook", webhook)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
