"""The shared LISTEN loop (manager/listen.py) against a real Postgres: notices reach their owner, a
catch-up call follows every (re)connect, and a connection the server kills is noticed, reported
and replaced without losing what is notified afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from manager.db import APPLICATION_NAME
from manager.listen import Listener

CHANNEL = "listen_test"


class Owner:
    """Records every call the listener makes, and lets the test await the next one."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []  # payloads per call; [] is a catch-up call
        self.changed = asyncio.Event()

    async def on_notices(self, conn: psycopg.AsyncConnection[Any], notices: list[psycopg.Notify]) -> None:
        await conn.execute("SELECT 1")  # the owner may query on the listener's connection
        self.calls.append([n.payload for n in notices])
        self.changed.set()

    async def until(self, check: Any, what: str, timeout: float = 10) -> None:
        async def wait() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; calls so far: {self.calls}") from None


async def notify(url: str, payload: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def listener_for(url: str, owner: Owner, app_name: str, catch_up_s: float | None = None) -> Listener:
    return Listener(
        url,
        (CHANNEL,),
        owner.on_notices,
        app_name=app_name,
        what="test listener",
        consequence="test notices wait",
        catch_up_s=catch_up_s,
    )


def payloads(owner: Owner) -> list[str]:
    return [p for call in owner.calls for p in call]


async def test_notices_arrive_and_a_killed_connection_is_replaced(database_url: str) -> None:
    owner = Owner()
    listener = listener_for(database_url, owner, "listen-test")
    await listener.start()
    try:
        await owner.until(lambda: owner.calls == [[]], "the catch-up call after connecting")
        assert listener.connected and listener.down_since is None and listener.last_error is None

        await notify(database_url, "one")
        await notify(database_url, "two")
        await owner.until(lambda: payloads(owner) == ["one", "two"], "two notices in order")
        assert listener.notifications == 2

        calls_before = len(owner.calls)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"{APPLICATION_NAME}:listen-test",),
            )
            assert [row[0] for row in await cur.fetchall()] == [True]
        # the loss is seen, reported, and followed by a fresh connection with its catch-up call
        await owner.until(lambda: [] in owner.calls[calls_before:], "the catch-up call after reconnecting")
        assert listener.connected and listener.last_error is None and listener.down_since is None

        await notify(database_url, "three")
        await owner.until(lambda: payloads(owner)[-1:] == ["three"], "a notice after the reconnect")
        assert listener.notifications == 3
    finally:
        await listener.stop()


async def test_catch_up_calls_come_without_notices_when_asked_for(database_url: str) -> None:
    owner = Owner()
    listener = listener_for(database_url, owner, "listen-test-catch-up", catch_up_s=0.05)
    await listener.start()
    try:
        await owner.until(lambda: len(owner.calls) >= 3, "catch-up calls every 0.05 s")
        assert all(call == [] for call in owner.calls) and listener.notifications == 0
    finally:
        await listener.stop()


async def test_an_unreachable_database_is_reported_until_it_answers(database_url: str) -> None:
    owner = Owner()
    unreachable = database_url.replace("dbname=", "dbname=no_such_database_") if "dbname=" in database_url else None
    assert unreachable is not None, database_url
    listener = listener_for(unreachable, owner, "listen-test-down")
    await listener.start()
    try:
        for _ in range(200):  # bounded: the first attempt fails within moments
            if listener.last_error:
                break
            await asyncio.sleep(0.01)
        assert not listener.connected and listener.down_since is not None
        assert listener.last_error and "no_such_database_" in listener.last_error
        assert owner.calls == []
    finally:
        await listener.stop()
