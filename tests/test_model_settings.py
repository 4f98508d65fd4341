"""Issue 12: model settings. Azure's classic deployment URLs, context windows by model, the
output cap's parameter name, and the bot answering through each of them."""

from __future__ import annotations

import pytest

from bot.settings import DEFAULT_CONTEXT_TOKENS, ConfigError, context_window, load_settings
from tests.conftest import MakeBot
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_requests import mention

GOOD = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o-mini", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("openai/gpt-4.1", 1_047_576),  # OpenRouter / LiteLLM names carry a provider prefix
        ("gemini-2.5-flash", 1_048_576),
        ("qwen2.5:7b", 32_768),
        ("my-azure-deployment", DEFAULT_CONTEXT_TOKENS),
    ],
)
def test_context_window_by_model(model: str, window: int) -> None:
    assert context_window(model) == window
    assert load_settings({**GOOD, "OPENAI_MODEL": model}).openai_context_tokens == window


def test_model_settings_and_their_defaults() -> None:
    s = load_settings(GOOD)
    assert s.tools.max_output_tokens == 8192 and s.tools.output_tokens_param == "max_completion_tokens"
    assert (s.agent_max_tool_calls_per_turn, s.agent_max_tool_calls, s.agent_tool_concurrency) == (10, 40, 4)
    custom = load_settings(
        {
            **GOOD,
            "OPENAI_CONTEXT_TOKENS": "32768",
            "OPENAI_MAX_OUTPUT_TOKENS": "1000",
            "OPENAI_OUTPUT_TOKENS_PARAM": "max_tokens",
            "AGENT_MAX_TOOL_CALLS_PER_TURN": "3",
        }
    )
    assert custom.openai_context_tokens == 32768 and custom.tools.max_output_tokens == 1000
    assert custom.tools.output_tokens_param == "max_tokens" and custom.agent_max_tool_calls_per_turn == 3


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OPENAI_OUTPUT_TOKENS_PARAM": "max_output"}, "OPENAI_OUTPUT_TOKENS_PARAM"),
        ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}, "OPENAI_API_VERSION"),
        ({"AZURE_OPENAI_ENDPOINT": "x.openai.azure.com", "OPENAI_API_VERSION": "1"}, "AZURE_OPENAI_ENDPOINT"),
        ({"OPENAI_CONTEXT_TOKENS": "ten"}, "OPENAI_CONTEXT_TOKENS"),
        ({"AGENT_TOOL_CONCURRENCY": "0"}, "AGENT_TOOL_CONCURRENCY"),
    ],
)
def test_bad_model_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**GOOD, **env})


async def test_azure_deployment_urls_and_key_header(make_bot: MakeBot, slack) -> None:
    """A classic Azure endpoint: /openai/deployments/<deployment>/..., api-version, api-key."""
    async with FakeOpenAI() as fake:
        harness = await make_bot(
            llm=None,
            AZURE_OPENAI_ENDPOINT=fake.url,
            OPENAI_API_VERSION="2024-10-21",
            AZURE_OPENAI_API_KEY="azure-key-0123456789",
            OPENAI_MODEL="switchboard-gpt4o",
        )
        try:
            await harness.event(mention("<@UBOT> hello", ts="90.1"))
            await harness.idle()
            assert fake.azure_calls == [("switchboard-gpt4o", "2024-10-21")]
            assert "OK from the fake model" in str(slack.posted("C1", "90.1"))
        finally:
            await harness.close()
        assert fake.schema_errors == []


async def test_the_output_cap_goes_in_the_parameter_the_server_reads(slack, llm, make_bot: MakeBot) -> None:
    harness = await make_bot(OPENAI_OUTPUT_TOKENS_PARAM="max_tokens")
    await harness.event(mention("<@UBOT> hello", ts="91.1"))
    await harness.idle()
    body = llm.last_request
    assert body["max_tokens"] == 8192 and "max_completion_tokens" not in body
