"""The hub and feeds in-process (no HTTP): shared fan-out, disconnects, slow readers."""

from __future__ import annotations

import asyncio

import pytest
from support.sse_oracle import SSEParser

from logstream.config import Settings
from logstream.server.live import tail
from logstream.server.services import Services

pytestmark = pytest.mark.services(feed_lines=64, page_lines=50, heartbeat=0.3)


async def _read(
    svc: Services, job_id: int, *, stop_after: int | None = None, delay: float = 0
) -> list[int]:
    parser, ids = SSEParser(), []
    stream = tail.follow(svc.hub, job_id, 0, "sse", live=True, end=None, retry_ms=100)
    async for chunk in stream:
        for event in parser.feed(chunk):
            if event.type == "end":
                return ids
            ids.append(int(event.last_event_id))
            if stop_after is not None and len(ids) >= stop_after:
                return ids
        if delay:
            await asyncio.sleep(delay)
    return ids


async def test_cancelled_reader_does_not_disturb_the_others(services: Services) -> None:
    """Regression: a reader cancelled while waiting must not disturb the others' doorbells."""
    job, _token = await services.writer.create_job("j", {})
    keep = asyncio.create_task(_read(services, job.id))
    leave = asyncio.create_task(_read(services, job.id))
    await asyncio.sleep(0.1)
    assert services.hub.feeds[job.id].readers == 2
    leave.cancel()  # the client went away while both were waiting on the same doorbell
    await asyncio.sleep(0.05)
    await services.writer.append(job.id, ["a", "b"], None)
    await services.writer.finish(job.id, "succeeded", 0, None)
    assert await asyncio.wait_for(keep, 5) == [1, 2]
    assert job.id not in services.hub.feeds  # the last reader out closed the feed


async def test_slow_reader_pages_from_store_and_misses_nothing(services: Services) -> None:
    """The ring holds 64 lines; a reader far behind pages from the store, in order."""
    job, _token = await services.writer.create_job("j", {})
    slow = asyncio.create_task(_read(services, job.id, delay=0.01))
    fast = asyncio.create_task(_read(services, job.id))
    for start in range(0, 2000, 100):
        await services.writer.append(job.id, [f"l{n}" for n in range(start, start + 100)], None)
        await asyncio.sleep(0)
    await services.writer.finish(job.id, "succeeded", 0, None)
    assert await asyncio.wait_for(fast, 10) == list(range(1, 2001))
    assert await asyncio.wait_for(slow, 30) == list(range(1, 2001))


async def test_idle_stream_sends_heartbeats(services: Services) -> None:
    job, _token = await services.writer.create_job("j", {})
    parser = SSEParser()
    stream = tail.follow(services.hub, job.id, 0, "sse", live=True, end=None, retry_ms=100)
    async with asyncio.timeout(5):
        async for chunk in stream:
            assert parser.feed(chunk) == []  # comments dispatch nothing
            if len(parser.comments) >= 2:
                break
    await stream.aclose()
    assert parser.comments[:2] == [" ping", " ping"]


async def test_shutdown_ends_waiting_streams(services: Services) -> None:
    job, _token = await services.writer.create_job("j", {})
    chunks: list[bytes] = []

    async def hold() -> None:
        async for chunk in tail.follow(
            services.hub, job.id, 0, "sse", live=True, end=None, retry_ms=100
        ):
            chunks.append(chunk)

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.1)
    services.hub.begin_shutdown()
    await asyncio.wait_for(task, 2)
    assert b"server shutting down" in chunks[-1] and b"retry: 100" in chunks[-1]


async def test_many_readers_are_rung_in_slices_and_all_get_everything(
    services: Services,
) -> None:
    """More readers than one ring slice: every one is woken (over several loop turns), reads
    every line once, and the feed learns how long serving a ring took (its adaptive linger)."""
    from logstream.server.live.feed import RING_SLICE

    count = RING_SLICE * 2 + 17
    job, _token = await services.writer.create_job("j", {})
    readers = [asyncio.create_task(_read(services, job.id)) for _ in range(count)]
    while job.id not in services.hub.feeds or services.hub.feeds[job.id].readers < count:
        await asyncio.sleep(0.01)
    feed = services.hub.feeds[job.id]
    await asyncio.sleep(0.1)  # all waiting on their doorbells
    for start in range(0, 300, 30):
        await services.writer.append(job.id, [f"l{n}" for n in range(start, start + 30)], None)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert feed.round_time > 0  # a ring was served to the end and timed
    await services.writer.finish(job.id, "succeeded", 0, None)
    results = await asyncio.wait_for(asyncio.gather(*readers), 20)
    assert all(ids == list(range(1, 301)) for ids in results)


def test_event_loop_setting() -> None:
    from logstream.config import SettingsError
    from logstream.server.run import loop_factory

    assert loop_factory(Settings.from_env({}, event_loop="asyncio")) is None
    import uvloop

    assert loop_factory(Settings.from_env({})) is uvloop.new_event_loop
    assert loop_factory(Settings.from_env({"LOGSTREAM_EVENT_LOOP": "uvloop"})) is not None
    with pytest.raises(SettingsError, match="event_loop"):
        Settings.from_env({"LOGSTREAM_EVENT_LOOP": "trio"})
