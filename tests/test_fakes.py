"""The fakes speak the real clients' protocols: openai.AsyncOpenAI and slack_sdk's AsyncWebClient.

If these fail, every other test's verdict is suspect, so they pin the wire format down.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import aiohttp
import pytest
from openai import AsyncOpenAI, BadRequestError, InternalServerError
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, shape_problems
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import block_actions_body, command_body, event_body, mention, sign

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"place": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "Weather in Karachi?"}]


def openai_client(fake: FakeOpenAI) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)


def slack_client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=fake.api_url)


async def test_openai_completion_round_trip(llm: FakeOpenAI) -> None:
    llm.script(Reply(tool_calls=[ToolCall("get_weather", {"place": "Karachi"})]), Reply(content="Hot."))
    async with openai_client(llm) as client:
        first = await client.chat.completions.create(model="m1", messages=ASK, tools=[WEATHER_TOOL])
        (call,) = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls" and first.model == "m1"
        assert call.id == "call_1" and json.loads(call.function.arguments) == {"place": "Karachi"}
        answer = [
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 35}'},
        ]
        second = await client.chat.completions.create(model="m1", messages=answer)
        third = await client.chat.completions.create(model="m1", messages=ASK)  # queue empty: default
    assert second.choices[0].message.content == "Hot." and second.choices[0].finish_reason == "stop"
    assert second.usage is not None and second.usage.prompt_tokens > 0
    assert third.choices[0].message.content == "OK from the fake model"
    assert llm.tool_names_sent(0) == ["get_weather"] and llm.tool_names_sent(1) == []
    assert len(llm.requests) == 3 and llm.last_request["messages"] == ASK


async def test_openai_streaming_content_and_tool_call(llm: FakeOpenAI) -> None:
    text = "A long answer that arrives in several pieces, like the real thing."
    llm.script(
        Reply(content=text, usage=(11, 7)),
        Reply(
            tool_calls=[ToolCall("get_weather", '{"place": "Kar'), ToolCall("get_weather", {"place": "Oslo"})]
        ),
    )
    async with openai_client(llm) as client:
        stream = await client.chat.completions.create(
            model="m1", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        pieces, usage = [], None
        async for chunk in stream:
            pieces += [c.delta.content for c in chunk.choices if c.delta.content]
            usage = chunk.usage or usage
        assert "".join(pieces) == text and len(pieces) > 2
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 7)

        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in await client.chat.completions.create(model="m1", messages=ASK, stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += delta.id or ""
                    slot["name"] += (delta.function and delta.function.name) or ""
                    slot["arguments"] += (delta.function and delta.function.arguments) or ""
    assert finish == "tool_calls"
    assert calls[0] == {"id": "call_1", "name": "get_weather", "arguments": '{"place": "Kar'}  # verbatim
    assert calls[1]["id"] == "call_2" and json.loads(calls[1]["arguments"]) == {"place": "Oslo"}


async def test_openai_rejects_schema_invalid_bodies_and_scripted_errors() -> None:
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as http:
        bad = {"model": "m1", "messages": [{"role": "wizard", "content": "hi"}], "temperature": "hot"}
        headers = {"Authorization": "Bearer sk-test"}
        async with http.post(f"{fake.base_url}/chat/completions", json=bad, headers=headers) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["type"] == "invalid_request_error" and "temperature" in error["message"]
        assert any("temperature" in e for e in fake.schema_errors) and fake.requests == [bad]

        fake.script(Reply(status=500, error_message="model overloaded"))
        async with openai_client(fake) as client:
            with pytest.raises(InternalServerError, match="model overloaded"):
                await client.chat.completions.create(model="m1", messages=ASK)
            with pytest.raises(BadRequestError):
                await client.chat.completions.create(model="m1", messages=[])  # minItems: 1


async def test_openai_detects_unanswered_and_orphaned_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    asked = {"role": "assistant", "content": None, "tool_calls": [call]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "35"}
    assert shape_problems([*ASK, asked, result, {"role": "assistant", "content": "Hot."}]) == []
    assert shape_problems([*ASK, asked, *ASK])  # a user message before the result
    assert shape_problems([*ASK, result])  # a result nobody asked for
    assert shape_problems([*ASK, asked, result, result])  # answered twice
    async with FakeOpenAI() as fake, openai_client(fake) as client:
        await client.chat.completions.create(model="m1", messages=[*ASK, asked, *ASK])
        assert fake.schema_errors == [] and "before tool calls ['c1']" in fake.shape_errors[0]


async def test_slack_post_and_paginate_history(slack: FakeSlack) -> None:
    stamps = slack.seed_messages("C1", 250, start_ts=1_600_000_000.0)
    client = slack_client(slack)
    posted = await client.chat_postMessage(channel="C1", text="hello", blocks=[{"type": "divider"}])
    assert posted["message"]["bot_id"] == "BBOT" and slack.posted(channel="C1")[0]["text"] == "hello"
    assert slack.calls_to("chat.postMessage")[0].params["blocks"] == [{"type": "divider"}]

    seen, cursor, pages = [], None, 0
    while True:
        page = await client.conversations_history(channel="C1", limit=100, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and seen[0] == posted["ts"] and seen[1:] == stamps[::-1]  # newest first

    window = await client.conversations_history(channel="C1", oldest=stamps[10], latest=stamps[20])
    assert [m["ts"] for m in window["messages"]] == stamps[19:10:-1]  # both bounds exclusive
    window = await client.conversations_history(
        channel="C1", oldest=stamps[10], latest=stamps[20], inclusive=True
    )
    assert len(window["messages"]) == 11


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")  # the no_text case
async def test_slack_threads_streams_and_limits(slack: FakeSlack) -> None:
    parent = slack.add_message("C1", "U1", "question")
    slack.add_message("C1", "U2", "an answer", thread_ts=parent)
    client = slack_client(slack)
    started = await client.chat_startStream(channel="C1", thread_ts=parent, markdown_text="Hel")
    await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="lo ")
    await client.chat_stopStream(channel="C1", ts=started["ts"], markdown_text="world")
    thread = (await client.conversations_replies(channel="C1", ts=parent))["messages"]
    assert [m["text"] for m in thread] == ["question", "an answer", "Hello world"]
    assert thread[0]["reply_count"] == 2 and slack.find("C1", thread[2]["ts"])["streaming"] is False

    for kwargs, error in [
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"markdown_text": "x" * 12_001}, "invalid_arguments"),
        ({"text": "51 blocks", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"text": "big", "blocks": [{"type": "markdown", "text": "x" * 12_001}]}, "invalid_blocks"),
        ({"text": ""}, "no_text"),
    ]:
        with pytest.raises(SlackApiError) as failed:
            await client.chat_postMessage(channel="C1", **kwargs)
        assert failed.value.response["error"] == error
    slack.add_channel("C9", "elsewhere", members=("U1",), bot_member=False)
    with pytest.raises(SlackApiError, match="not_in_channel"):
        await client.chat_postMessage(channel="C9", text="hi")


async def test_slack_faults_auth_and_response_urls(slack: FakeSlack) -> None:
    client = slack_client(slack)
    slack.fail_next("chat.postMessage", status=429, retry_after=2)
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel="C1", text="too fast")
    assert failed.value.response.status_code == 429 and failed.value.response["error"] == "ratelimited"
    assert failed.value.response.headers["Retry-After"] == "2"
    assert (await client.chat_postMessage(channel="C1", text="later"))["ok"]  # one failure only
    slack.fail_next("users.info", error="fatal_error")
    with pytest.raises(SlackApiError, match="fatal_error"):
        await client.users_info(user="U1")
    assert (await client.users_info(user="U1"))["user"]["tz"] == "Europe/Berlin"

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{slack.api_url}auth.test") as response:
            assert (await response.json())["error"] == "not_authed"
        async with http.post(slack.response_url("digest"), json={"text": "Working on it"}) as response:
            assert response.status == 200
    assert slack.responses == [{"text": "Working on it", "_name": "digest"}]
    await slack.wait_for_call("chat.postMessage", count=2)
    with pytest.raises(AssertionError, match="calls so far"):
        await slack.wait_for(lambda: False, timeout=0.05)


async def test_slack_big_history_is_cheap(slack: FakeSlack) -> None:
    """CPU seconds, not wall time: the bound holds however busy the machine is."""
    started = time.process_time()
    stamps = slack.seed_messages("C2", 50_000, step=1.0)
    page = await slack_client(slack).conversations_history(channel="C2", latest=stamps[25_000], limit=5)
    assert [m["ts"] for m in page["messages"]] == stamps[24_999:24_994:-1]
    assert time.process_time() - started < 1.0


def test_signed_requests_verify_with_slack_sdk() -> None:
    body = event_body(mention("<@UBOT> hi", thread_ts="1.0"))
    verifier = SignatureVerifier("secret")
    assert verifier.is_valid_request(body, sign("secret", body))
    assert not verifier.is_valid_request(body, sign("other", body))
    event = json.loads(body)
    assert event["type"] == "event_callback" and event["event"]["type"] == "app_mention"
    assert json.loads(event_body({})).keys() >= {"event_id", "event_time", "authorizations"}
    form = parse_qs(command_body("/weather", "Karachi", response_url="http://x/r").decode())
    assert form["command"] == ["/weather"] and form["text"] == ["Karachi"]
    payload = json.loads(parse_qs(block_actions_body({"action_id": "a1"}).decode())["payload"][0])
    assert payload["type"] == "block_actions" and payload["actions"][0]["action_id"] == "a1"


async def test_slack_applied_faults_and_the_metadata_rule(slack: FakeSlack) -> None:
    """internal_error after the write happened, and metadata shown only to readers who ask for it."""
    client = slack_client(slack)
    tag = {"event_type": "switchboard_post", "event_payload": {"post": "p1"}}
    slack.fail_next("chat.postMessage", error="internal_error", applied=True)
    with pytest.raises(SlackApiError, match="internal_error"):
        await client.chat_postMessage(channel="C1", text="posted anyway", metadata=tag)
    (message,) = slack.posted(channel="C1")
    assert message["text"] == "posted anyway" and message["metadata"] == tag
    plain = (await client.conversations_history(channel="C1"))["messages"]
    assert "metadata" not in plain[0]
    full = (await client.conversations_history(channel="C1", include_all_metadata=True))["messages"]
    assert full[0]["metadata"] == tag
    final = {"event_type": "switchboard_answer", "event_payload": {"tag": "t", "final": True}}
    await client.chat_update(channel="C1", ts=message["ts"], text="edited", metadata=final)
    replies = await client.conversations_replies(channel="C1", ts=message["ts"], include_all_metadata=True)
    assert replies["messages"][0]["metadata"] == final
    slack.fail_next("chat.delete", error="fatal_error")  # not applied: the message stays
    with pytest.raises(SlackApiError, match="fatal_error"):
        await client.chat_delete(channel="C1", ts=message["ts"])
    assert slack.posted(channel="C1") == [message]


async def test_slack_uploads_share_a_file_in_a_thread(slack: FakeSlack) -> None:
    parent = slack.add_message("C1", "U1", "question")
    slack.scopes = slack.scopes | {"files:write"}
    client = slack_client(slack)
    done = await client.files_upload_v2(
        channel="C1", thread_ts=parent, content="# The whole answer\n", filename="answer.md", title="Answer"
    )
    (shared,) = slack.posted(channel="C1", thread_ts=parent)
    (file,) = shared["files"]
    assert done["file"]["id"] == file["id"] and file["name"] == "answer.md" and file["title"] == "Answer"
    assert slack.files[file["id"]][1] == b"# The whole answer\n"
    slack.scopes = slack.scopes - {"files:write"}
    with pytest.raises(SlackApiError, match="missing_scope"):
        await client.files_upload_v2(channel="C1", content="x", filename="answer.md")
