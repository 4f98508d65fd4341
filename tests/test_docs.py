"""The docs site holds together without building it: every page under docs/ is in mkdocs.yml's
nav and every nav entry exists (a page left out of the nav is unreachable), and the README's and
the pages' relative links resolve. CI's `mkdocs build --strict` checks the same and more, but
only in .ci/run; this catches it in the suite, in milliseconds."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# [text](target): the target up to a space, a closing parenthesis or an anchor.
LINK = re.compile(r"\]\((?P<target>[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def nav_pages(entries: Any) -> list[str]:
    """Every page path in a nav tree: strings, {title: page} and {title: [entries]}."""
    found: list[str] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                found.extend(nav_pages(value))
    return found


def local_links(markdown: str) -> list[str]:
    """Relative link targets outside code (http(s), mailto and bare anchors are not files)."""
    targets = [m["target"] for m in LINK.finditer(CODE.sub("", markdown))]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_nav_lists_every_page_and_only_pages_that_exist() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert len(listed) == len(set(listed)), "a page is listed twice"
    assert sorted(listed) == on_disk
    assert "reference/settings.md" in listed and "index.md" in listed


def test_readme_links_into_docs_resolve() -> None:
    links = local_links((ROOT / "README.md").read_text())
    into_docs = [t for t in links if t.startswith("docs/")]
    assert len(into_docs) >= 8  # the README is a doorway into the site
    missing = [t for t in links if not (ROOT / t).exists()]
    assert missing == []
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = set(nav_pages(config["nav"]))
    assert {t.removeprefix("docs/") for t in into_docs if t.endswith(".md")} <= listed


def test_links_between_pages_resolve() -> None:
    missing = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in local_links(page.read_text()):
            resolved = PurePosixPath(page.relative_to(DOCS).parent.as_posix(), target)
            parts: list[str] = []
            for part in resolved.parts:
                if part == "..":
                    if not parts:  # out of docs/: mkdocs cannot serve it
                        parts = ["<outside docs>"]
                        break
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            if not (DOCS / "/".join(parts)).is_file():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert missing == []


def test_the_link_finder_sees_links_and_skips_code() -> None:
    text = "See [a](a.md#x), [b](../b.md) and [web](https://example.com).\n`[c](c.md)`\n```\n[d](d.md)\n```"
    assert local_links(text) == ["a.md", "../b.md"]
