"""Issue 12: a server we did not write parses our requests. The real LiteLLM proxy sits between
the bot (driven through its signed HTTP front door) and the fake model server."""

from __future__ import annotations

import pytest

from tests.conftest import MakeBot
from tests.fakes.litellm_proxy import MODEL, PROXY_KEY, find_litellm, litellm_proxy
from tests.fakes.model_quirks import Quirks
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_requests import mention, thread_message
from tests.test_providers import ANSWER, answered, two_clocks

LITELLM = find_litellm()
pytestmark = pytest.mark.skipif(
    LITELLM is None,
    reason="the LiteLLM proxy is not installed: pip install 'litellm[proxy]>=1.108' into a venv of its "
    "own (it pins rich<14) and set LITELLM_BIN to its litellm executable",
)
UPSTREAMS = [
    Quirks("openai"),
    Quirks("repeated-index", stream_call_index="repeated"),
    Quirks("gemini-like", stream_call_index="missing", thought_signatures=True),
]


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=[u.name for u in UPSTREAMS])
async def test_a_conversation_through_the_litellm_proxy(make_bot: MakeBot, slack, upstream: Quirks) -> None:
    assert LITELLM is not None
    async with FakeOpenAI(upstream) as fake, litellm_proxy(LITELLM, fake.base_url) as proxy:
        fake.responder = two_clocks
        env = {"OPENAI_API_KEY": PROXY_KEY, "OPENAI_BASE_URL": f"{proxy.url}/v1", "OPENAI_MODEL": MODEL}
        harness = await make_bot(llm=None, **env)
        try:
            await harness.event(mention("<@UBOT> how far ahead is Karachi of Berlin?", ts="80.1"))
            await harness.idle()
            assert ANSWER in answered(slack, "80.1")
            first, second = fake.requests[:2]
            assert first["tool_choice"] == "auto" and first["stream"] is True
            results = [m["content"] for m in second["messages"] if m["role"] == "tool"]
            assert "Asia/Karachi" in results[0] and "Europe/Berlin" in results[1]
            await harness.event(thread_message("and again?", ts="80.2", thread_ts="80.1"))
            await harness.idle()
            assert "Still four hours" in answered(slack, "80.1")
        finally:
            await harness.close()
        assert fake.schema_errors == [] and fake.shape_errors == []
