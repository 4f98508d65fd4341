"""CPU-heavy parsing (HTML to text, PDF to text) in worker processes that are killed on a deadline.

A thread cannot be stopped: a hostile page (thousands of tiny tables) kept trafilatura busy for
minutes after the tool had timed out, and a few such pages starved everyone's fetches. Here each
job runs in a separate process with a hard deadline and an input size cap; on the deadline the
process is killed (SIGKILL) and replaced, so a hostile input costs at most its deadline.

`Extractor` keeps warm workers (`python -m tools.parsing.extract`, speaking length-prefixed frames over
stdin/stdout); `extract()` uses the run's pool when the context has one, else a one-off worker.
The workers are shared fairly between the people asking (one person's pages cannot hold them
all while another waits), and a parse is part of the asking run's time: when that is up, the
job leaves the queue, or its worker is killed, and the caller is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tools.parsing.fair_slots import FairSlots
from tools.toolkit.errors import UserFacingError, present

log = logging.getLogger(__name__)

DEADLINE = 10.0
STARTUP_TIMEOUT = 60.0  # importing the parsers in a new worker; not part of any job's deadline
MAX_INPUT_BYTES = 10_000_000
MAX_OUTPUT_CHARS = 2_000_000
MAX_PDF_PAGES = 500
WORKER_MEMORY = 2 * 1024**3  # address-space cap of a worker: a decompression bomb fails, not the host
TIME_UP = "the time limit of this answer was reached before it could be read"


class ExtractError(UserFacingError):
    """The input could not be turned into text (too big, too slow, malformed); say so to the user."""


# --- the parsers (run inside a worker) ----------------------------------------------------------
def html_to_text(data: bytes) -> str:
    """Readable text of a page (trafilatura), falling back to tag-stripped text."""
    import trafilatura

    html = data.decode("utf-8", errors="replace")
    text = trafilatura.extract(html, include_links=False, include_tables=True, favor_recall=True)
    if text:
        return text
    from lxml import html as lxml_html

    try:
        return " ".join(lxml_html.fromstring(html).text_content().split())
    except Exception:  # lxml on hostile HTML: no text
        return ""


def pdf_to_text(data: bytes) -> str:
    """Text of each page (pypdf), with page markers; scanned pages have none and say so."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise ExtractError("the PDF is password-protected")
        except ExtractError:
            raise
        except Exception:  # pypdf's errors share no class
            raise ExtractError("the PDF is password-protected") from None
    parts, total = [], len(reader.pages)
    for i, page in enumerate(reader.pages[:MAX_PDF_PAGES]):
        parts.append(f"--- page {i + 1} ---\n{(page.extract_text() or '').strip()}")
    if total > MAX_PDF_PAGES:
        parts.append(f"[only the first {MAX_PDF_PAGES} of {total} pages were read]")
    text = "\n\n".join(parts)
    if not any(p.split("\n", 1)[-1].strip() for p in parts):
        raise ExtractError("the PDF has no text layer (a scan?), so there is nothing to read")
    return text


PARSERS: dict[str, Callable[[bytes], str]] = {"html": html_to_text, "pdf": pdf_to_text}


# --- the wire: 4-byte big-endian length, then the body ------------------------------------------
def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _serve() -> None:
    """Worker main loop: one request in, one answer out, until stdin closes."""
    with contextlib.suppress(Exception):  # not every platform has RLIMIT_AS
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the answers
    import pypdf  # noqa: F401  (imported before "ready": the deadline covers parsing, not start-up)
    import trafilatura  # noqa: F401

    out.write(_frame(b'{"ready": true}'))
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        blob = stdin.read(int.from_bytes(head, "big"))
        header, _, data = blob.partition(b"\n")
        kind = json.loads(header)["kind"]
        try:
            answer: dict[str, Any] = {"ok": True, "text": PARSERS[kind](data)[:MAX_OUTPUT_CHARS]}
        except ExtractError as exc:
            answer = {"ok": False, "error": str(exc)}
        except MemoryError:
            answer = {"ok": False, "error": "it needs more memory than a worker may use"}
        except Exception as exc:  # the parser worker's boundary
            answer = {"ok": False, "error": f"it could not be parsed ({type(exc).__name__})"}
        out.write(_frame(json.dumps(answer).encode()))
        out.flush()


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdin = present(proc.stdin, "the worker's stdin pipe")  # started with PIPE
        self.stdout = present(proc.stdout, "the worker's stdout pipe")

    @classmethod
    async def start(cls, module: str) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        worker = cls(proc)
        try:
            await asyncio.wait_for(worker.read(), STARTUP_TIMEOUT)  # the "ready" frame
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def read(self) -> dict[str, Any]:
        size = int.from_bytes(await self.stdout.readexactly(4), "big")
        answer = json.loads(await self.stdout.readexactly(size))
        if not isinstance(answer, dict):
            raise ExtractError("the parser answered in a form I don't know")
        return answer

    async def ask(self, kind: str, data: bytes) -> dict[str, Any]:
        self.stdin.write(_frame(json.dumps({"kind": kind}).encode() + b"\n" + data))
        await self.stdin.drain()
        return await self.read()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            await self.kill()


def _left(until: float | None) -> float | None:
    return None if until is None else until - time.monotonic()


class Extractor:
    """A small pool of parser processes shared fairly between the people who ask
    (tools/parsing/fair_slots.py).

    Each job has a deadline, after which its worker dies and a new one is started in its place;
    a job also ends when the asking run's time is up (`until`), queued or running. At most
    `workers` jobs run at once, on `workers + spares` processes: the next job after a kill takes
    a spare instead of waiting for a new process to import its parsers (seconds on a busy host).
    `worker_module` is what each worker runs (`python -m ...`): tests swap in a parser they control.
    """

    def __init__(
        self,
        workers: int = 2,
        deadline: float = DEADLINE,
        max_bytes: int = MAX_INPUT_BYTES,
        *,
        spares: int = 1,
        worker_module: str = "tools.parsing.extract",
    ) -> None:
        self.workers, self.deadline, self.max_bytes = workers, deadline, max_bytes
        self.spares, self.worker_module = spares, worker_module
        self.slots = FairSlots(workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._launching = 0  # workers being started, by a job or as a replacement
        self._replacing: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()  # set (and swapped) when a worker is idle or a start ended
        self._closed = False
        self.killed = 0  # workers killed on a deadline (or a cancelled job)
        self.pids: list[int] = []  # every worker started, for tests and operators

    @property
    def size(self) -> int:
        """Live workers: idle or parsing (not those still starting)."""
        return len(self._idle) + len(self._busy)

    @property
    def full_size(self) -> int:
        return self.workers + self.spares

    async def run(self, kind: str, data: bytes, *, owner: str = "", until: float | None = None) -> str:
        """Text of `data` parsed as `kind` ("html" or "pdf"); ExtractError when it cannot be.

        `owner` (the person or run asking) decides the place in the queue; `until` (a
        time.monotonic() value: when the asking run's time is up) ends the wait and the parse.
        """
        if kind not in PARSERS:
            raise ExtractError(f"no parser for {kind}")
        if len(data) > self.max_bytes:
            raise ExtractError(f"it is {len(data):,} bytes; the limit is {self.max_bytes:,}")
        left = _left(until)
        if left is not None and left <= 0:
            raise ExtractError(TIME_UP)
        try:
            await self.slots.acquire(owner, left)
        except TimeoutError:
            raise ExtractError(TIME_UP) from None
        try:
            answer = await self._parse(kind, data, until)
        finally:
            self.slots.release(owner)
        if not answer.get("ok"):
            raise ExtractError(answer.get("error") or "it could not be parsed")
        return str(answer.get("text") or "")

    async def _parse(self, kind: str, data: bytes, until: float | None) -> dict[str, Any]:
        """One job on one worker, within the page's deadline and the run's time."""
        try:  # a worker is at hand unless kills outran the spares: then one is starting
            async with asyncio.timeout(_left(until)):
                worker = await self._take()
        except TimeoutError:
            raise ExtractError(TIME_UP) from None
        left = _left(until)
        if left is not None and left <= 0:
            self._give_back(worker)
            raise ExtractError(TIME_UP)
        self._busy.add(worker)
        limit, run_ends = self.deadline, False
        if left is not None and left < limit:
            limit, run_ends = left, True
        try:
            answer = await asyncio.wait_for(worker.ask(kind, data), limit)
        except BaseException as exc:  # deadline, a dead worker or a cancelled run: kill it
            self._busy.discard(worker)
            self.killed += 1
            self._replace()
            await worker.kill()
            if isinstance(exc, TimeoutError):
                if run_ends:
                    raise ExtractError(TIME_UP) from None
                raise ExtractError(f"reading it took longer than {self.deadline:g} s") from None
            if isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
                raise ExtractError("the parser crashed on it") from None
            raise
        self._busy.discard(worker)
        self._give_back(worker)
        return answer

    async def _take(self) -> _Worker:
        """An idle worker; else a new one while the pool is short; else the next to come free."""
        while not self._idle:
            if self.size + self._launching < self.full_size:
                return await self._start()
            await self._changed.wait()
        return self._idle.pop()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _give_back(self, worker: _Worker) -> None:
        self._idle.append(worker)
        self._notify()

    def _replace(self) -> None:
        """Start a worker for the one just killed, so the pool is back at full size before the
        next job needs it."""
        if self._closed:
            return

        async def replace() -> None:
            try:
                worker = await self._start()
            except Exception:  # retried by the next job
                log.warning("a replacement parser worker did not start; the next job starts one")
                return
            if self._closed:
                await worker.close()
                return
            self._give_back(worker)

        task = asyncio.get_running_loop().create_task(replace(), name="replace parser worker")
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def settle(self) -> None:
        """Wait until the replacements of killed workers have started (or failed to)."""
        while self._replacing:
            await asyncio.gather(*self._replacing, return_exceptions=True)

    async def warm(self) -> None:
        """Start the idle workers now, so the first jobs do not wait for start-up."""
        await self.settle()
        missing = self.full_size - self.size - self._launching
        self._idle += await asyncio.gather(*(self._start() for _ in range(missing)))

    async def _start(self) -> _Worker:
        self._launching += 1
        try:
            worker = await _Worker.start(self.worker_module)
        except BaseException:
            self._notify()  # a job waiting for this start may start one itself now
            raise
        finally:
            self._launching -= 1
        self.pids.append(worker.proc.pid)
        return worker

    async def close(self) -> None:
        self._closed = True
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        workers, self._idle = [*self._idle, *self._busy], []
        self._busy.clear()
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)


async def extract(
    pool: Extractor | None,
    kind: str,
    data: bytes,
    deadline: float = DEADLINE,
    *,
    owner: str = "",
    until: float | None = None,
) -> str:
    """Parse with the run's pool, or with a one-off worker where there is none (console, tests).

    `owner` is who asks (their place in the pool's queue), `until` when their run's time is up.
    """
    if pool is not None:
        return await pool.run(kind, data, owner=owner, until=until)
    once = Extractor(workers=1, deadline=deadline)
    try:
        return await once.run(kind, data, owner=owner, until=until)
    finally:
        await once.close()


if __name__ == "__main__":
    _serve()
