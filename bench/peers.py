"""The benchmarks' remote peers in a process of their own: the fake Slack and a demo service.

Slack and the services opsgate calls live on other machines; running their fakes in the
benchmark's own event loop would charge their work to the app being measured. Run as
``python -m bench.peers``: prints ``<slack api url> <service port>`` and serves until killed.
"""

import asyncio

from aiohttp import web

from bot.sandbox.webapi import FakeSlack

USERS = ("UREQ", "UAPP1", "UAPP2")


async def main() -> None:
    fake = FakeSlack()
    api_url = await fake.start()
    for user in USERS:
        fake.add_user(user, name=user.lower())

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "down"}, status=503)

    async def restart(_request: web.Request) -> web.Response:
        return web.json_response({"restarted": True})

    app = web.Application()
    app.router.add_get("/svc/{name}/health", health)
    app.router.add_post("/svc/{name}/restart", restart)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    print(api_url, server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
