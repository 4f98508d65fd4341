"""Long answers split under Slack's limits, never inside a code fence."""

import re

from bot.slack.output.render import markdown_messages
from bot.slack.output.split import split_markdown

FENCE = re.compile(r"^(```|~~~)", re.M)


def answer_30k() -> str:
    parts = []
    for i in range(12):
        paragraph = "Paragraph text on <!date^1392734382^{date}|Feb 18> in <#C123|general>. "
        parts.append(f"## Section {i}\n\n" + paragraph * 30)
        parts.append("```python\n" + "\n".join(f"print({i}, {j})  # line" for j in range(60)) + "\n```")
    parts.append("```\n" + "\n".join(f"big block line {j} " + "y" * 60 for j in range(200)) + "\n```")
    text = "\n\n".join(parts)
    assert len(text) > 30_000
    return text


def test_30k_answer_with_code_blocks() -> None:
    text = answer_30k()
    parts = split_markdown(text, 12_000)
    assert len(parts) >= 3
    for part in parts:
        assert 0 < len(part) <= 12_000
        assert len(FENCE.findall(part)) % 2 == 0, "a part must not end inside a code fence"
    joined = "\n".join(parts)
    for i in range(12):
        assert f"## Section {i}" in joined and f"print({i}, 59)" in joined
    assert joined.index("Section 3") < joined.index("Section 4")
    strip = lambda s: re.sub(r"\s+", "", s.replace("```python", "").replace("```", ""))  # noqa: E731
    assert strip("".join(parts)) == strip(text)


def test_one_huge_line_and_edges() -> None:
    line = "word " * 10_000
    parts = split_markdown(line, 12_000)
    assert all(len(p) <= 12_000 for p in parts) and " ".join(parts).split() == line.split()
    assert split_markdown("") == [] and split_markdown("   \n\n ") == []
    exact = "a" * 12_000
    assert split_markdown(exact) == [exact]
    assert split_markdown("héllo 🌍\n\nsecond") == ["héllo 🌍\n\nsecond"]


def test_messages_stay_under_every_limit() -> None:
    messages = markdown_messages(answer_30k(), [{"type": "divider"}])
    for m in messages:
        assert len(m["text"]) <= 40_000 and len(m["blocks"]) <= 50
        assert all(len(b.get("text", "")) <= 12_000 for b in m["blocks"])
    assert messages[-1]["blocks"][-1] == {"type": "divider"}
    assert all(b["type"] == "markdown" for m in messages[:-1] for b in m["blocks"])
