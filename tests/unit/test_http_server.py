"""The embedded HTTP server has no tick: the Date header is made per response, and `stop()` ends
it at once (it sleeps on an event, not on a timer)."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
from fastapi import FastAPI

from manager.http.server import HttpServer


async def test_responses_carry_a_current_date_and_stop_ends_the_server() -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    assert server.address is not None
    host, port = server.address
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            dates = []
            for pause in (1.05, 0):  # the header is kept for the second it was made in
                response = await client.get("/ping")
                assert response.status_code == 200
                dates.append(parsedate_to_datetime(response.headers["date"]).timestamp())
                await asyncio.sleep(pause)
            assert all(abs(d - time.time()) < 5 for d in dates)
            assert dates[1] > dates[0]
    finally:
        await asyncio.wait_for(server.stop(), 5)
    assert server._task is not None and server._task.done()
