"""Issue 24: install anywhere. Slack's OAuth v2 flow end to end against the fake Slack, tokens
encrypted at rest, two workspaces that never see each other's data, and uninstalls that stop
all work for a workspace.

The fake's `oauth.v2.access` answers with the fields of java-slack-sdk's capture
(tests/fixtures/slack/api/oauth.v2.access.json); `app_uninstalled` and `tokens_revoked` follow
Slack's event reference examples (see tests/fixtures/slack/SOURCES.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlmodel import select

from bot.db.models import GridWorkspace, SlackInstallation
from bot.ops.doctor import doctor
from bot.settings import ConfigError
from bot.slack import install as installs
from bot.slack.install import SCOPES
from tests.conftest import Bot, MakeBot, make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import command_body, event_body, mention, thread_message
from tests.fakes.slack_rules import manifest_scopes

KEY = Fernet.generate_key().decode()
FIXTURES = Path(__file__).parent / "fixtures" / "slack"
ORG, GRID_TEAM = "E1", "T7"  # a Grid org that installed the app org-wide, and one of its workspaces
_ids = itertools.count(1)


def oauth_env(slack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "",
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_TOKEN_KEY": KEY,
    }


@pytest.fixture
async def obot(make_bot: MakeBot, slack) -> Bot:
    return await make_bot(**oauth_env(slack))


async def install(bot: Bot, slack, team: str) -> int:
    """The installer opens /slack/install, consents in Slack, and Slack redirects back."""
    async with bot.http.get(f"{bot.url}/slack/install") as r:
        assert r.status == 200
        page = await r.text()
        cookie = r.headers["Set-Cookie"].split(";")[0]
    state = cookie.split("=", 1)[1]
    assert f"state={state}" in page and "oauth/v2/authorize" in page  # the "Add to Slack" link
    slack.oauth_codes[f"code-{team}"] = team
    url = f"{bot.url}/slack/oauth_redirect?code=code-{team}&state={state}"
    async with bot.http.get(url, headers={"Cookie": cookie}) as r:
        return r.status


async def installations(bot: Bot) -> list[SlackInstallation]:
    async with bot.rt.db.session() as s:
        return list((await s.exec(select(SlackInstallation))).all())


async def mention_in(bot: Bot, team: str, text: str, ts: str) -> None:
    status, _ = await bot.post(event_body(mention(text, ts=ts), team=team), "application/json")
    assert status == 200


def posts_by_token(slack) -> list[tuple[str, str]]:
    return [(c.token, c.params.get("thread_ts", "")) for c in slack.calls if c.method == "chat.postMessage"]


async def test_install_stores_the_token_encrypted(obot: Bot, slack) -> None:
    assert await install(obot, slack, "T1") == 200
    [access] = slack.calls_to("oauth.v2.access")
    assert access.params["code"] == "code-T1"
    [row] = await installations(obot)
    token = next(t for t, team in slack.token_teams.items() if team == "T1")
    assert row.team_id == "T1" and row.bot_user_id == "UBOT" and row.bot_id
    assert token not in row.bot_token and "xoxb" not in row.bot_token  # encrypted at rest
    assert Fernet(KEY).decrypt(row.bot_token.encode()).decode() == token


async def test_a_state_is_used_once_and_must_match_the_cookie(obot: Bot, slack) -> None:
    async with obot.http.get(f"{obot.url}/slack/install") as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    state = cookie.split("=", 1)[1]
    slack.oauth_codes["code-T1"] = "T1"
    forged = f"{obot.url}/slack/oauth_redirect?code=code-T1&state=forged"
    async with obot.http.get(forged, headers={"Cookie": "slack-app-oauth-state=forged"}) as r:
        assert r.status >= 400
    good = f"{obot.url}/slack/oauth_redirect?code=code-T1&state={state}"
    async with obot.http.get(good, headers={"Cookie": cookie}) as r:
        assert r.status == 200
    slack.oauth_codes["code-T1"] = "T1"
    async with obot.http.get(good, headers={"Cookie": cookie}) as r:  # replayed
        assert r.status >= 400
    assert len(slack.calls_to("oauth.v2.access")) == 1 and len(await installations(obot)) == 1


async def test_two_workspaces_never_see_each_other(obot: Bot, slack, llm) -> None:
    await install(obot, slack, "T1")
    await install(obot, slack, "T2")
    token = {team: t for t, team in slack.token_teams.items()}
    llm.script(Reply(content="one"), Reply(content="two"), Reply(content="three"), Reply(content="four"))
    # The same channel id and thread ts in both workspaces.
    await mention_in(obot, "T1", "<@UBOT> secret plan of team one", "100.1")
    await obot.idle()
    await mention_in(obot, "T2", "<@UBOT> question of team two", "100.1")
    await obot.idle()
    assert posts_by_token(slack) == [(token["T1"], "100.1"), (token["T2"], "100.1")]
    assert [m["content"] for m in llm.requests[1]["messages"][1:]] == ["question of team two"]
    for team, text in (("T1", "follow-up one"), ("T2", "follow-up two")):
        body = event_body(thread_message(text, ts="100.5", thread_ts="100.1"), team=team)
        assert (await obot.post(body, "application/json"))[0] == 200
        await obot.idle()
    contents = [[m["content"] for m in r["messages"][1:]] for r in llm.requests[2:]]
    assert contents == [
        ["secret plan of team one", "one", "follow-up one"],
        ["question of team two", "two", "follow-up two"],
    ]
    assert [t for t, _ in posts_by_token(slack)[2:]] == [token["T1"], token["T2"]]
    await obot.rt.db.channel_settings.write("T1", "C1", "follow_ups", "off", "U1")
    assert (await obot.rt.db.channel_settings.effective("T2", "C1")).follow_ups
    assert not (await obot.rt.db.channel_settings.effective("T1", "C1")).follow_ups


async def test_files_are_downloaded_with_their_workspaces_token(obot: Bot, slack, llm) -> None:
    await install(obot, slack, "T1")
    await install(obot, slack, "T2")
    notes = slack.add_file("notes.txt", b"Bob owns QA.", "text/plain")
    llm.script(Reply(content="Bob."))
    event = {**mention("<@UBOT> who owns QA?", ts="300.1"), "files": [notes], "upload": False}
    assert (await obot.post(event_body(event, team="T2"), "application/json"))[0] == 200
    await obot.idle()
    assert slack.downloads == [(notes["id"], True)]
    assert slack.download_tokens == [next(t for t, team in slack.token_teams.items() if team == "T2")]
    assert "Bob owns QA." in json.dumps(llm.requests[0]["messages"])


async def test_home_tab_lists_only_this_workspaces_runs(obot: Bot, slack, llm) -> None:
    await install(obot, slack, "T1")
    await install(obot, slack, "T2")
    llm.script(Reply(content="one"))
    await mention_in(obot, "T1", "<@UBOT> a question in workspace one", "400.1")
    await obot.idle()
    [run] = await obot.rt.db.runs.recent("U1")
    home = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home", "event_ts": "1.1"}
    for team in ("T2", "T1"):
        assert (await obot.post(event_body(home, team=team), "application/json"))[0] == 200
        await obot.idle()
        shown = f"run {run.id}" in str(slack.home_views["U1"]["blocks"])
        assert shown == (team == "T1"), team


def uninstall_body(kind: str, team: str) -> bytes:
    event: dict[str, Any] = {"type": kind, "event_ts": "1361482916.000004"}
    if kind == "tokens_revoked":
        event["tokens"] = {"oauth": [], "bot": ["UBOT"]}
    return event_body(event, team=team)


@pytest.mark.parametrize("kind", ["app_uninstalled", "tokens_revoked"])
async def test_uninstall_stops_all_work_for_that_workspace(obot: Bot, slack, llm, kind: str) -> None:
    await install(obot, slack, "T1")
    await install(obot, slack, "T2")
    digest = await obot.rt.db.digests.add(
        team_id="T2",
        channel_id="C1",
        source_channel_id="C1",
        cron="0 9 * * *",
        timezone="UTC",
        creator_id="U1",
    )
    kept = await obot.rt.db.digests.add(
        team_id="T1",
        channel_id="C1",
        source_channel_id="C1",
        cron="0 9 * * *",
        timezone="UTC",
        creator_id="U1",
    )
    assert (await obot.post(uninstall_body(kind, "T2"), "application/json"))[0] == 200
    await obot.idle()
    assert [row.team_id for row in await installations(obot)] == ["T1"]
    assert (await obot.rt.db.digests.get(digest.id)).last_status == "paused"
    assert (await obot.rt.db.digests.get(kept.id)).last_status is None
    assert (
        await obot.rt.digest_scheduler.run(await obot.rt.db.digests.get(digest.id), digest.created_at)
        == "paused"
    )
    llm.script(Reply(content="still here"))
    calls = len(slack.calls)
    await mention_in(obot, "T2", "<@UBOT> anyone?", "200.1")
    await mention_in(obot, "T1", "<@UBOT> hello", "200.2")
    await obot.idle()
    assert len(llm.requests) == 1 and "hello" in json.dumps(llm.requests[0]["messages"])
    token_t1 = next(t for t, team in slack.token_teams.items() if team == "T1")
    assert {c.token for c in slack.calls[calls:]} == {token_t1}  # nothing went out for T2


def test_oauth_settings(slack, llm) -> None:
    oauth = {"SLACK_BOT_TOKEN": "", "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigError, match="SLACK_TOKEN_KEY"):
        make_settings(slack, llm, "sqlite+aiosqlite://", **oauth)
    with pytest.raises(ConfigError, match="SLACK_TOKEN_KEY"):
        make_settings(slack, llm, "sqlite+aiosqlite://", **oauth, SLACK_TOKEN_KEY="not-a-key")
    with pytest.raises(ConfigError, match="HTTP mode"):
        make_settings(
            slack, llm, "sqlite+aiosqlite://", **oauth, SLACK_TOKEN_KEY=KEY, SLACK_APP_TOKEN="xapp-1"
        )
    with pytest.raises(ConfigError, match="SLACK_CLIENT_SECRET"):
        make_settings(slack, llm, "sqlite+aiosqlite://", SLACK_CLIENT_ID="1.2")
    assert make_settings(slack, llm, "sqlite+aiosqlite://", **oauth, SLACK_TOKEN_KEY=KEY).oauth
    assert not make_settings(slack, llm, "sqlite+aiosqlite://").oauth  # SLACK_BOT_TOKEN stays the default


def test_install_asks_for_the_manifests_scopes_and_hears_uninstalls() -> None:
    assert set(SCOPES) == manifest_scopes()
    manifest = yaml.safe_load((Path(__file__).parents[1] / "manifest.yml").read_text())
    assert {"app_uninstalled", "tokens_revoked"} <= set(
        manifest["settings"]["event_subscriptions"]["bot_events"]
    )


def org_wide_body(event: dict[str, Any], team: str = GRID_TEAM) -> bytes:
    """bolt-python's published org-wide-install envelope (`authorizations[0].team_id` null), its ids
    rewritten to the test world; the workspace comes from the envelope's `team_id`."""
    published = FIXTURES / "events" / "bolt-python.test_events_org_apps.event_payload.json"
    body = json.loads(published.read_text())
    body |= {"team_id": team, "enterprise_id": ORG, "api_app_id": "A1", "event": event}
    body["event_id"] = f"EvOrg{next(_ids):06d}"
    body["authorizations"][0] |= {"enterprise_id": ORG, "user_id": "UBOT"}
    assert body["authorizations"][0]["team_id"] is None and body["authorizations"][0]["is_enterprise_install"]
    return json.dumps(body).encode()


def org_command_body(command: str, text: str, team: str = GRID_TEAM) -> bytes:
    """A slash command from a workspace of an org-wide install: Slack adds `enterprise_id` and
    `is_enterprise_install=true` (bolt-js's SlashCommand reference, docs.slack.dev)."""
    return command_body(command, text, team=team).replace(
        b"is_enterprise_install=false", f"is_enterprise_install=true&enterprise_id={ORG}".encode()
    )


def token_of(slack, team: str) -> str:
    return next(t for t, installed in slack.token_teams.items() if installed == team)


async def test_an_org_wide_install_serves_each_workspace_of_its_org(obot: Bot, slack, llm) -> None:
    await install(obot, slack, "T1")
    assert await install(obot, slack, ORG) == 200
    rows = {(r.enterprise_id, r.team_id, r.is_enterprise_install) for r in await installations(obot)}
    assert rows == {("", "T1", False), (ORG, "", True)}
    llm.script(Reply(content="org answer"), Reply(content="from the command"))
    asked = org_wide_body(mention("<@UBOT> hi from the org", ts="700.1"))
    assert (await obot.post(asked, "application/json"))[0] == 200
    await obot.idle()
    [post] = slack.calls_to("chat.postMessage")
    assert post.token == token_of(slack, ORG) and post.params["thread_ts"] == "700.1"
    async with obot.rt.db.session() as s:  # remembered for work that will know only the team id
        assert [(g.team_id, g.enterprise_id) for g in (await s.exec(select(GridWorkspace))).all()] == [
            (GRID_TEAM, ORG)
        ]
    # The Home tab of that workspace lists the run: the request is served as T7, not as team "".
    [run] = await obot.rt.db.runs.recent("U1")
    home = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home", "event_ts": "1.1"}
    assert (await obot.post(org_wide_body(home), "application/json"))[0] == 200
    await obot.idle()
    assert f"run {run.id}" in str(slack.home_views["U1"]["blocks"])
    # A slash command becomes a command job, run later by team id alone (bot/slack/answering/command_jobs.py).
    status, _ = await obot.post(org_command_body("/ask", "what now?"), "application/x-www-form-urlencoded")
    assert status == 200
    await obot.idle()
    answers = slack.calls_to("chat.postMessage")[1:]
    assert [c.token for c in answers] == [token_of(slack, ORG)]
    assert "from the command" in json.dumps(answers[0].params)


async def test_work_resumed_by_team_id_finds_the_org_wide_token_and_bot_user(obot: Bot, slack, llm) -> None:
    await install(obot, slack, ORG)
    llm.script(Reply(content="hello"))
    await obot.post(org_wide_body(mention("<@UBOT> hi", ts="710.1")), "application/json")
    await obot.idle()
    await obot.restart()  # a new process: no token, org or bot user known in memory

    async def resumed() -> tuple[str | None, str]:
        installs.serve(GRID_TEAM)  # as bot/slack/answering/turns.py resumes a queued turn: team id only
        return obot.rt.bot_user_id, await obot.rt.slack_token()

    assert obot.rt.own_user_id is None  # OAuth mode: no process-wide bot user
    assert await asyncio.create_task(resumed()) == ("UBOT", token_of(slack, ORG))
    with pytest.raises(installs.NotInstalled):  # a workspace of no known org stays refused
        installs.serve("T404")
        await obot.rt.slack_token()
    # A digest of that workspace fires from the database, in the new process, with the org's token.
    slack.add_message("C1", "U1", "Ship it on Friday.", "720.1")
    llm.script(Reply(content="They agreed to ship on Friday."))
    schedule = await obot.rt.db.digests.add(
        team_id=GRID_TEAM,
        channel_id="C1",
        source_channel_id="C1",
        cron="0 9 * * *",
        timezone="UTC",
        creator_id="U1",
    )
    calls = len(slack.calls)
    await obot.rt.digest_scheduler.run(schedule, datetime(2026, 12, 3, 9, tzinfo=UTC))
    posts = [c for c in slack.calls[calls:] if c.method == "chat.postMessage"]
    assert posts and {c.token for c in slack.calls[calls:]} == {token_of(slack, ORG)}


async def test_doctor_checks_each_installation_in_oauth_mode(obot: Bot, slack, llm, db_url, capsys) -> None:
    await install(obot, slack, "T1")
    await install(obot, slack, "T2")
    await install(obot, slack, ORG)
    slack.revoked.add(token_of(slack, "T2"))
    async with obot.rt.db.session() as s:  # a row written under another SLACK_TOKEN_KEY
        other = Fernet(Fernet.generate_key()).encrypt(b"xoxb-other").decode()
        s.add(SlackInstallation(team_id="T3", bot_token=other, bot_scopes=""))
        await s.commit()
    env = {
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": db_url,
        "OPENAI_API_KEY": "sk-test-key-0123456789",
        "OPENAI_BASE_URL": llm.base_url,
        "LLM_MAX_RETRIES": "0",
        **oauth_env(slack),
    }
    llm.script(Reply(content="ok"), Reply(content="ok"))
    capsys.readouterr()
    assert await doctor(env) == 1
    slack_lines = [line for line in capsys.readouterr().out.splitlines() if " slack: " in line]
    assert slack_lines == [
        "ok    slack: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are accepted by Slack",
        "ok    slack: workspace T1: its token works, as switchboard",
        "FAIL  slack: workspace T2: Slack rejected its token: token_revoked (reinstall at /slack/install)",
        f"ok    slack: org {ORG} (org-wide): its token works, as switchboard",
        "FAIL  slack: workspace T3: SLACK_TOKEN_KEY cannot decrypt its token (another key?)",
    ]
    assert not any(token in line for line in slack_lines for token in slack.token_teams)
    wrong = env | {"SLACK_CLIENT_SECRET": "not-the-secret"}
    slack.revoked.clear()
    assert await doctor(wrong) == 1
    out = capsys.readouterr().out
    assert "FAIL  slack: Slack rejected SLACK_CLIENT_ID/SLACK_CLIENT_SECRET: invalid_client_id" in out


async def test_doctor_in_oauth_mode_before_any_install(make_bot: MakeBot, slack, db_url, capsys) -> None:
    harness = await make_bot(**oauth_env(slack))  # leaves a current schema, no installation
    await harness.close()
    env = {
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": db_url,
        **oauth_env(slack),
    }
    await doctor(env)
    out = capsys.readouterr().out
    assert "warn  slack: no workspace has installed the app yet: open /slack/install" in out


def test_the_missing_token_message_names_oauth_mode(slack, llm) -> None:
    with pytest.raises(ConfigError) as raised:
        make_settings(slack, llm, "sqlite+aiosqlite://", SLACK_BOT_TOKEN="")
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_TOKEN_KEY"):
        assert name in str(raised.value)
