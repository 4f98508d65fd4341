"""A parser worker whose jobs report to the test and wait for its word: parsing on cue.

`Extractor(worker_module="tests.fakes.parser_worker")` runs this instead of tools/parsing/extract.py (same
protocol). A job's data is `host:port name` and a newline, then the page (or PDF): the worker
connects to the test's `ParseControl` on 127.0.0.1, says `start name`, waits for a line back,
then parses the rest with the real parser. A job the test never answers runs until its worker is
killed, like a hostile page that takes the whole deadline; so tests assert order and outcome by
events, not by how fast the machine is.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tools.parsing import extract


def _on_cue(parse: Callable[[bytes], str]) -> Callable[[bytes], str]:
    def parse_on_cue(data: bytes) -> str:
        head, _, body = data.partition(b"\n")
        address, name = head.decode().split(" ", 1)
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(f"start {name}\n".encode())
            conn.makefile("rb").readline()
        return parse(body)

    return parse_on_cue


class ParseControl:
    """The test's side: records which jobs started, in order, and lets them go."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.go_at_once: set[str] = set()  # names released as soon as they start
        self.everyone_goes = False  # after open(): every job is released as it starts
        self._held: dict[str, asyncio.StreamWriter] = {}
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ParseControl:
        self._server = await asyncio.start_server(self._job, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._held.values():
            writer.close()
        assert self._server is not None
        self._server.close()

    def job(
        self, name: str, body: bytes = b"<html><body><article><p>Hello.</p></article></body></html>"
    ) -> bytes:
        """The data of a job named `name` whose content is `body`."""
        return f"127.0.0.1:{self.port} {name}\n".encode() + body

    def release(self, *names: str) -> None:
        for name in names:
            writer = self._held.pop(name)
            writer.write(b"go\n")

    def open(self) -> None:
        """Release every held job, and every job from now on as it starts."""
        self.everyone_goes = True
        self.release(*self._held)

    async def wait(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until `condition()` holds; the timeout only guards against a hang."""
        async with asyncio.timeout(timeout):
            while not condition():
                changed = self._changed
                await changed.wait()

    async def _job(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = (await reader.readline()).decode().removeprefix("start ").strip()
        self.started.append(name)
        self._held[name] = writer
        if self.everyone_goes or name in self.go_at_once:
            self.release(name)
        self._changed.set()
        self._changed = asyncio.Event()


if __name__ == "__main__":
    extract.PARSERS["html"] = _on_cue(extract.html_to_text)
    extract.PARSERS["pdf"] = _on_cue(extract.pdf_to_text)
    extract._serve()
