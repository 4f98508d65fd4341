"""Issue 11 item 3: HTML and PDF parsing run in worker processes killed on their deadline."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes.files import make_pdf
from tests.fakes.web import FakeWeb
from tools import ToolError
from tools.call_api import call_api
from tools.parsing.extract import ExtractError, Extractor, extract
from tools.toolkit.context import ToolContext, ToolSettings


def hostile_page(cells: int = 30_000) -> str:
    """Nested one-cell tables under 2 MB: trafilatura needs several seconds of CPU for it."""
    rows = "".join(f"<tr><td><p>c{i}</p><table><tr><td>z</td></tr></table></td></tr>" for i in range(cells))
    return f"<html><body><table>{rows}</table></body></html>"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child stays a zombie until reaped; /proc tells the two apart
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_hostile_page_is_killed_while_a_normal_fetch_finishes(http) -> None:
    pool = Extractor(workers=2, deadline=3.0)
    async with FakeWeb() as web:
        web.pages["hostile"] = hostile_page()
        settings = ToolSettings(
            http_allow_hosts=frozenset({f"127.0.0.1:{web.port}"}),
            fetch_max_bytes=3_000_000,
            extract_deadline=3.0,
        )
        ctx = ToolContext(http=http, settings=settings, extractor=pool)
        try:
            await pool.warm()
            hostile = asyncio.create_task(call_api(ctx, f"{web.url}/page/hostile"))
            while not pool._busy:  # the hostile page is being parsed
                await asyncio.sleep(0.01)
            normal = await call_api(ctx, f"{web.url}/article")
            assert normal.text and "say_stream" in normal.text
            assert not hostile.done()  # the other user's page did not wait for the hostile one
            with pytest.raises(ToolError, match=r"longer than 3 s"):
                await hostile
            assert pool.killed == 1
            dead = [pid for pid in pool.pids if not alive(pid)]
            assert len(dead) == 1  # its process is gone, not a thread still burning a core
            again = await call_api(ctx, f"{web.url}/article")  # the pool replaced the worker
            assert again.text == normal.text
        finally:
            await pool.close()
    assert not any(alive(pid) for pid in pool.pids)


async def test_input_cap_and_one_off_worker() -> None:
    pool = Extractor(workers=1, max_bytes=1_000)
    with pytest.raises(ExtractError, match="limit is 1,000"):
        await pool.run("html", b"x" * 2_000)
    assert pool.pids == []  # refused before any process started
    text = await extract(
        None,
        "html",
        b"<html><body><article><p>Hello from a one-off worker process.</p></article></body></html>",
    )
    assert "one-off worker" in text


async def test_pdf_text_and_broken_pdf() -> None:
    pool = Extractor(workers=1)
    try:
        text = await pool.run("pdf", make_pdf(["Quarterly numbers: revenue up 12%", "Second page here"]))
        assert "revenue up 12%" in text and "--- page 2 ---" in text and "Second page" in text
        with pytest.raises(ExtractError, match=r"could not be parsed|no text"):
            await pool.run("pdf", b"%PDF-1.4 this is not really a pdf")
        assert pool.killed == 0  # a parse error is an answer, not a dead worker
    finally:
        await pool.close()
