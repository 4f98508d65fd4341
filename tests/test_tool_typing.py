"""`@tool` keeps the wrapped function's signature: mypy rejects a wrong direct call of a tool."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = textwrap.dedent(
    """
    from tools import tool
    from tools.toolkit.context import ToolContext
    from tools.weather import get_weather


    @tool
    async def bare(ctx: ToolContext, n: int) -> int:
        return n


    async def calls(ctx: ToolContext) -> None:
        reveal_type(await get_weather(ctx, location="Karachi", days=2))
        reveal_type(await bare(ctx, 3))
        await get_weather(ctx, location=42, x=1)
        await bare(ctx, "three")
    """
)


def test_mypy_checks_direct_tool_calls_against_the_signature(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    cache = tmp_path / "cache"
    if (ROOT / ".mypy_cache").is_dir():  # the README's command ran mypy just before: start from it
        shutil.copytree(ROOT / ".mypy_cache", cache)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = {line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith(str(snippet))}
    # `@tool(...)` and bare `@tool` both keep the result type ...
    assert 'note: Revealed type is "tools.weather.Forecast"' in lines
    assert 'note: Revealed type is "int"' in lines
    # ... and the parameters: a wrong type and an unknown keyword are caught, for either form.
    call = 'to "__call__" of "Tool" has incompatible type'
    assert f'error: Argument "location" {call} "int"; expected "str"  [arg-type]' in lines
    assert 'error: Unexpected keyword argument "x" for "__call__" of "Tool"  [call-arg]' in lines
    assert f'error: Argument 2 {call} "str"; expected "int"  [arg-type]' in lines
    assert done.stdout.rstrip().endswith("Found 3 errors in 1 file (checked 1 source file)"), done.stdout
