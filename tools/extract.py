"""CPU-heavy parsing (HTML to text, PDF to text) in worker processes that are killed on a deadline.

A thread cannot be stopped: a hostile page (thousands of tiny tables) kept trafilatura busy for
minutes after the tool had timed out, and a few such pages starved everyone's fetches. Here each
job runs in a separate process with a hard deadline and an input size cap; on the deadline the
process is killed (SIGKILL) and replaced, so a hostile input costs at most its deadline.

`Extractor` keeps warm workers (`python -m tools.extract`, speaking length-prefixed frames over
stdin/stdout); `extract()` uses the run's pool when the context has one, else a one-off worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEADLINE = 10.0
STARTUP_TIMEOUT = 60.0  # importing the parsers in a new worker; not part of any job's deadline
MAX_INPUT_BYTES = 10_000_000
MAX_OUTPUT_CHARS = 2_000_000
MAX_PDF_PAGES = 500
WORKER_MEMORY = 2 * 1024**3  # address-space cap of a worker: a decompression bomb fails, not the host


class ExtractError(Exception):
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
    except Exception:
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
        except Exception:
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
        except Exception as exc:
            answer = {"ok": False, "error": f"it could not be parsed ({type(exc).__name__})"}
        out.write(_frame(json.dumps(answer).encode()))
        out.flush()


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.extract",
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
        assert self.proc.stdout is not None
        size = int.from_bytes(await self.proc.stdout.readexactly(4), "big")
        return json.loads(await self.proc.stdout.readexactly(size))

    async def ask(self, kind: str, data: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_frame(json.dumps({"kind": kind}).encode() + b"\n" + data))
        await self.proc.stdin.drain()
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


class Extractor:
    """A small pool of parser processes; each job has a deadline, after which its worker dies."""

    def __init__(
        self, workers: int = 2, deadline: float = DEADLINE, max_bytes: int = MAX_INPUT_BYTES
    ) -> None:
        self.workers, self.deadline, self.max_bytes = workers, deadline, max_bytes
        self._gate = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self.killed = 0  # workers killed on a deadline (or a cancelled job)
        self.pids: list[int] = []  # every worker started, for tests and operators

    async def run(self, kind: str, data: bytes) -> str:
        """Text of `data` parsed as `kind` ("html" or "pdf"); ExtractError when it cannot be."""
        if kind not in PARSERS:
            raise ExtractError(f"no parser for {kind}")
        if len(data) > self.max_bytes:
            raise ExtractError(f"it is {len(data):,} bytes; the limit is {self.max_bytes:,}")
        async with self._gate:
            worker = self._idle.pop() if self._idle else await self._start()
            self._busy.add(worker)
            try:
                answer = await asyncio.wait_for(worker.ask(kind, data), self.deadline)
            except BaseException as exc:  # deadline, a dead worker or a cancelled run: kill it
                self._busy.discard(worker)
                self.killed += 1
                await worker.kill()
                if isinstance(exc, TimeoutError):
                    raise ExtractError(f"reading it took longer than {self.deadline:g} s") from None
                if isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
                    raise ExtractError("the parser crashed on it") from None
                raise
            self._busy.discard(worker)
            self._idle.append(worker)
        if not answer.get("ok"):
            raise ExtractError(answer.get("error") or "it could not be parsed")
        return str(answer.get("text") or "")

    async def warm(self) -> None:
        """Start the idle workers now, so the first jobs do not wait for start-up."""
        missing = self.workers - len(self._idle) - len(self._busy)
        self._idle += await asyncio.gather(*(self._start() for _ in range(missing)))

    async def _start(self) -> _Worker:
        worker = await _Worker.start()
        self.pids.append(worker.proc.pid)
        return worker

    async def close(self) -> None:
        workers, self._idle = [*self._idle, *self._busy], []
        self._busy.clear()
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)


async def extract(pool: Extractor | None, kind: str, data: bytes, deadline: float = DEADLINE) -> str:
    """Parse with the run's pool, or with a one-off worker where there is none (console, tests)."""
    if pool is not None:
        return await pool.run(kind, data)
    once = Extractor(workers=1, deadline=deadline)
    try:
        return await once.run(kind, data)
    finally:
        await once.close()


if __name__ == "__main__":
    _serve()
