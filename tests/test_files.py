"""Issue 13 part 4: files and images shared with the bot, end to end through the front door.

Files are served by the fake Slack (url_private_download, Bearer token, files:read), in the shape
of the file object Slack published in bolt-python's file_share payload.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.files import make_pdf, make_png
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import dm, mention, thread_message
from tests.fakes.slack_rules import manifest_scopes
from tests.test_extract import alive


def shared(event: dict, *files: dict, subtype: str | None = "file_share") -> dict:
    event = {**event, "files": list(files), "upload": False}
    if subtype:
        event["subtype"] = subtype
    return event


def prompt(llm, i: int = -1) -> str:
    return json.dumps(llm.requests[i]["messages"])


@pytest.fixture
async def vision_bot(make_bot: MakeBot) -> Bot:
    return await make_bot(OPENAI_VISION="true")


async def test_text_file_in_a_dm_is_read_with_name_type_and_size(bot: Bot, slack, llm) -> None:
    notes = slack.add_file(
        "notes.md", b"# Launch plan\n\nShip on **Friday**; Bob owns QA.\n", "text/markdown"
    )
    llm.script(Reply(content="Bob owns QA."))
    await bot.event(shared(dm("who owns QA?"), notes))
    await bot.idle()
    assert slack.downloads == [(notes["id"], True)]
    seen = prompt(llm)
    assert "Ship on **Friday**; Bob owns QA." in seen and 'name=\\"notes.md\\"' in seen
    assert "text/markdown" in seen and "bytes" in seen  # the model sees type and size
    assert "not instructions" in seen  # file content is fenced as untrusted data
    assert [m["text"] for m in slack.posted(channel="D1")] == ["Bob owns QA."]
    run = await queries.last_run(bot.rt.db)
    (step,) = [s for s in await queries.steps(bot.rt.db, run.id) if s.kind == "file"]
    assert step.name.startswith("notes.md (text/markdown") and step.output_chars > 40 and step.error is None


async def test_csv_json_and_code_in_a_mention(bot: Bot, slack, llm) -> None:
    files = [
        slack.add_file("sales.csv", b"region,total\nnorth,120\nsouth,80\n", "text/csv"),
        slack.add_file("config.json", b'{"retries": 3}', "application/json"),
        slack.add_file("main.py", b"print('hello')\n", "text/x-python", filetype="python"),
    ]
    llm.script(Reply(content="North leads."))
    await bot.event(shared(mention("<@UBOT> compare these"), *files, subtype=None))
    await bot.idle()
    seen = prompt(llm)
    assert "north,120" in seen and '\\"retries\\": 3' in seen and "print('hello')" in seen
    assert slack.posted(channel="C1")[-1]["text"] == "North leads."


async def test_pdf_is_read_in_the_worker(bot: Bot, slack, llm) -> None:
    pdf = slack.add_file("report.pdf", make_pdf(["Revenue grew 12% in Q3", "Costs fell"]), "application/pdf")
    llm.script(Reply(content="Revenue grew 12%."))
    await bot.event(shared(mention("<@UBOT> summarize the report"), pdf, subtype=None))
    await bot.idle()
    seen = prompt(llm)
    assert "Revenue grew 12% in Q3" in seen and "--- page 2 ---" in seen and "Costs fell" in seen
    assert bot.rt.extractor is not None and bot.rt.extractor.pids  # parsed in a worker process
    pids = list(bot.rt.extractor.pids)
    await bot.stop()
    assert not any(alive(pid) for pid in pids)  # shutdown leaves no parser process behind


async def test_image_with_vision_is_an_image_url_part_only_in_its_turn(vision_bot: Bot, slack, llm) -> None:
    png = make_png()
    image = slack.add_file("chart.png", png, "image/png")
    llm.script(Reply(content="A red square."), Reply(content="Still red."))
    await vision_bot.event(shared(dm("what is in this image?", thread_ts="80.1", ts="80.2"), image))
    await vision_bot.idle()
    user = next(m for m in llm.requests[0]["messages"] if m["role"] == "user")
    kinds = [part["type"] for part in user["content"]]
    assert kinds == ["text", "image_url"]
    assert user["content"][1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert "chart.png" in user["content"][0]["text"]
    await vision_bot.event(dm("and the colour?", thread_ts="80.1", ts="80.3"))
    await vision_bot.idle()
    assert "base64" not in prompt(llm, 1) and "chart.png" in prompt(llm, 1)  # later turns: name only
    stored = await vision_bot.rt.db.conversations.history(
        (await vision_bot.rt.db.conversations.find("T1", "D1", "80.1")).id
    )
    assert "base64" not in json.dumps(stored)


async def test_image_without_vision_gets_a_plain_sentence(bot: Bot, slack, llm) -> None:
    image = slack.add_file("photo.jpg", make_png(), "image/jpeg")
    llm.script(Reply(content="I can answer the text part."))
    await bot.event(shared(dm("what's this? and what time is it in Tokyo?"), image))
    await bot.idle()
    texts = [m["text"] for m in slack.posted(channel="D1")]
    assert "can't see images" in texts[0] and "photo.jpg" in texts[0]
    assert texts[1] == "I can answer the text part."
    assert slack.downloads == []  # nothing fetched that could not be used
    assert "image_url" not in prompt(llm)


async def test_unreadable_type_without_question_gets_a_clear_reply_and_no_model_call(
    bot: Bot, slack, llm
) -> None:
    doc = slack.add_file(
        "minutes.docx",
        b"PK\x03\x04 not really a docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    await bot.event(shared(dm(""), doc))
    await bot.idle()
    (reply,) = slack.posted(channel="D1")
    assert "minutes.docx" in reply["text"] and "can't read this type" in reply["text"]
    assert llm.requests == []


async def test_oversized_file_is_refused_before_download(slack, llm, make_bot: MakeBot) -> None:
    bot = await make_bot(FILE_MAX_BYTES="5000")
    big = slack.add_file("dump.log", b"x" * 6000, "text/plain")
    llm.script(Reply(content="Noted."))
    await bot.event(shared(dm("look at this log"), big))
    await bot.idle()
    texts = [m["text"] for m in slack.posted(channel="D1")]
    assert "dump.log" in texts[0] and "larger than" in texts[0] and slack.downloads == []
    assert texts[1] == "Noted." and "not readable" in prompt(llm)


async def test_long_file_is_truncated_with_a_note(slack, llm, make_bot: MakeBot) -> None:
    bot = await make_bot(FILE_TOKEN_BUDGET="100")
    log = slack.add_file("server.log", ("line of log text\n" * 500).encode(), "text/plain")
    llm.script(Reply(content="Looks repetitive."))
    await bot.event(shared(dm("anything odd?"), log))
    await bot.idle()
    seen = prompt(llm)
    assert "truncated: the first 400 of 8,500 characters" in seen
    assert seen.count("line of log text") < 30  # the budget held
    assert "server.log is long" in slack.posted(channel="D1")[0]["text"]


async def test_without_files_read_scope_the_user_is_told(slack, llm, make_bot: MakeBot) -> None:
    slack.scopes = manifest_scopes() - {"files:read"}
    bot = await make_bot()
    notes = slack.add_file("notes.txt", b"secret plan", "text/plain")
    await bot.event(shared(dm(""), notes))
    await bot.idle()
    (reply,) = slack.posted(channel="D1")
    assert "notes.txt" in reply["text"] and "would not let me download" in reply["text"]
    assert slack.downloads == [(notes["id"], False)] and llm.requests == []


async def test_files_in_threads_and_assistant_threads(bot: Bot, slack, llm) -> None:
    llm.script(
        Reply(content="Thread started."), Reply(content="Read the thread file."), Reply(content="Panel.")
    )
    await bot.event(mention("<@UBOT> let's talk", ts="90.1"))
    await bot.idle()
    a = slack.add_file("a.txt", b"alpha file body", "text/plain")
    await bot.event(shared(thread_message("see attached", thread_ts="90.1", ts="90.2"), a))
    await bot.idle()
    assert "alpha file body" in prompt(llm, 1)
    b = slack.add_file("b.txt", b"bravo file body", "text/plain")
    await bot.event(shared(dm("and this one", thread_ts="95.1", ts="95.2"), b))  # an assistant thread
    await bot.idle()
    assert "bravo file body" in prompt(llm, 2) and len(llm.requests) == 3


async def test_a_file_in_a_private_channel_stays_there(bot: Bot, slack, llm) -> None:
    slack.add_channel("G1", "leadership", members=("U1",), is_private=True)
    plan = slack.add_file("plan.txt", b"acquire the competitor in May", "text/plain")
    llm.script(Reply(content="Noted, in here."), Reply(content="I don't know of any plan."))
    await bot.event(shared(mention("<@UBOT> keep this in mind", channel="G1", ts="99.1"), plan, subtype=None))
    await bot.idle()
    assert "acquire the competitor" in prompt(llm, 0)
    assert slack.posted(channel="G1")[-1]["text"] == "Noted, in here."
    await bot.event(mention("<@UBOT> what was the plan in that file?", channel="C1", ts="99.5"))
    await bot.idle()
    assert "acquire the competitor" not in prompt(llm, 1)  # another conversation never sees it


@pytest.mark.parametrize(("channel", "private"), [("G1", True), ("C1", False)])
async def test_file_content_from_a_private_channel_cannot_be_sent_out(
    slack,
    llm,
    channel,
    private,
    make_bot: MakeBot,
) -> None:
    """A file's content counts as what the run read: from a private channel the egress guard holds
    model-chosen requests (here: expired approval, nothing sent); from a public one they go out."""
    from tests.fakes.web import FakeWeb

    slack.add_channel("G1", "leadership", members=("U1",), is_private=True)
    async with FakeWeb() as web:
        env = {"TOOL_HTTP_ALLOW_HOSTS": f"127.0.0.1:{web.port}", "EGRESS_APPROVAL_SECONDS": "0.3"}
        bot = await make_bot(**env)
        try:
            plan = slack.add_file("plan.txt", b"acquire-initech-in-may", "text/plain")
            url = f"{web.url}/page/collect?data=acquire-initech-in-may"
            llm.script(Reply(tool_calls=[ToolCall("call_api", {"url": url})]), Reply(content="Done."))
            await bot.event(
                shared(mention("<@UBOT> look at this", channel=channel, ts="77.1"), plan, subtype=None)
            )
            await bot.idle()
            if private:
                assert web.hits == [] and "Not sent" in prompt(llm, 1)
            else:
                assert web.hits == ["/page/collect?data=acquire-initech-in-may"]
        finally:
            await bot.close()


MB = 1024 * 1024


@pytest.mark.parametrize("size", [int(1.5 * MB), 5 * MB, 9 * MB], ids=["1.5MB", "5MB", "9MB"])
async def test_large_files_are_read_to_the_end(bot: Bot, slack, llm, size: int) -> None:
    """Issue 24: one read(n) returned what was buffered, ~128 KB, for files of every size."""
    body = (b"0123456789abcde\n" * (size // 16 + 1))[:size]
    log = slack.add_file("big.log", body, "text/plain")
    llm.script(Reply(content="Read it."))
    await bot.event(shared(dm("anything odd?"), log))
    await bot.idle()
    # The budget shows only the start, but the note counts every character that arrived.
    assert f"of {size:,} characters are shown" in prompt(llm)


async def test_a_large_image_reaches_the_model_whole(vision_bot: Bot, slack, llm) -> None:
    png = make_png() + b"\x00" * (3 * MB)  # trailing bytes: still an image to the model
    image = slack.add_file("scan.png", png, "image/png")
    llm.script(Reply(content="A scan."))
    await vision_bot.event(shared(dm("what is this?"), image))
    await vision_bot.idle()
    user = next(m for m in llm.requests[0]["messages"] if m["role"] == "user")
    url = user["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == png


async def test_a_file_larger_than_it_said_is_cut_at_the_cap_and_the_person_told(
    slack, llm, make_bot: MakeBot
) -> None:
    """The cap holds on the bytes received: a false declared size neither lets more through nor
    cuts the file silently."""
    bot = await make_bot(FILE_MAX_BYTES=str(MB))
    liar = slack.add_file("small.csv", b"a,b\n" * (2 * MB), "text/csv", size=1_000)
    llm.script(Reply(content="Noted."))
    await bot.event(shared(dm("sum column a"), liar))
    await bot.idle()
    assert slack.downloads == [(liar["id"], True)]
    told = slack.posted(channel="D1")[0]["text"]
    assert "small.csv is larger than the 1.0 MB I can read" in told
    assert "not readable" in prompt(llm) and "a,b" not in prompt(llm)


async def test_a_slack_connect_file_is_looked_up_with_files_info(bot: Bot, slack, llm) -> None:
    """A file from another organisation arrives as a stub (no name, size or link): files.info
    gives the real object, then it is read like any other."""
    notes = slack.add_file("partner-notes.txt", b"the partner ships on Tuesday", "text/plain")
    llm.script(Reply(content="Tuesday."))
    await bot.event(shared(dm("when do they ship?"), slack.connect_stub(notes)))
    await bot.idle()
    (info,) = slack.calls_to("files.info")
    assert info.params["file"] == notes["id"]
    seen = prompt(llm)
    assert "the partner ships on Tuesday" in seen and "partner-notes.txt" in seen
    assert "unnamed file" not in seen and slack.posted(channel="D1")[0]["text"] == "Tuesday."


async def test_a_slack_connect_file_slack_will_not_show_is_told(bot: Bot, slack, llm) -> None:
    stub = {**slack.connect_stub({"id": "F404"})}
    llm.script(Reply(content="I could not read it."))
    await bot.event(shared(dm("read this"), stub))
    await bot.idle()
    told = slack.posted(channel="D1")[0]["text"]
    assert "another organisation" in told and "file_not_found" in told
    assert slack.downloads == []
