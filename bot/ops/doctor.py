"""`switchboard doctor`: check what a deployment needs and say what is wrong in plain words."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping

from sqlalchemy.engine import make_url

from bot.db import schema
from bot.settings import ConfigError, Settings, describe, load_settings


def explain_model_error(exc: BaseException, settings: Settings) -> str:
    """A model failure in words an operator can act on: which setting, what to try."""
    import openai

    cause: BaseException = exc
    while cause.__cause__ is not None and not isinstance(cause, openai.OpenAIError):
        cause = cause.__cause__
    where = settings.openai_base_url or "https://api.openai.com/v1"
    if isinstance(cause, openai.APITimeoutError) or isinstance(cause, TimeoutError):
        return f"the model endpoint at {where} (OPENAI_BASE_URL) did not answer in time (LLM_TIMEOUT)"
    if isinstance(cause, openai.APIConnectionError):
        return f"cannot reach the model endpoint at {where} (OPENAI_BASE_URL): is the server running?"
    if isinstance(cause, openai.AuthenticationError):
        return f"the model endpoint at {where} rejected OPENAI_API_KEY (401)"
    if isinstance(cause, openai.NotFoundError):
        hint = "" if where.rstrip("/").endswith("/v1") else "; OPENAI_BASE_URL usually ends in /v1"
        return (
            f"the model endpoint at {where} (OPENAI_BASE_URL) answered 404: check that OPENAI_MODEL "
            f"({settings.openai_model}) exists there{hint}"
        )
    if isinstance(cause, openai.APIStatusError):
        return f"the model endpoint at {where} answered {cause.status_code}: {cause.message}"
    return str(exc)


def safe_database_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def check_database(settings: Settings) -> tuple[bool, str]:
    from bot.runtime import open_database

    try:
        db = open_database(settings)
    except ConfigError as exc:
        return False, str(exc)
    where = safe_database_url(settings.database_url)
    try:
        try:
            await db.ping(timeout=10)
        except Exception as exc:  # doctor reports every failure
            return False, f"cannot connect to {where}: {type(exc).__name__}: {exc}"
        found = await schema.state(db.engine)
        return found.status == "current", f"{where}: {found.describe()}"
    finally:
        await db.close()


async def check_pool(settings: Settings) -> tuple[bool | None, str] | None:
    """Whether every process's pool fits the Postgres server: DB_PROCESSES x (DB_POOL_SIZE +
    DB_MAX_OVERFLOW + the front door's RECORDING_CONNECTIONS + its one LISTEN connection,
    bot/work/wake.py) against max_connections - superuser_reserved_connections (and, from
    PostgreSQL 16, reserved_connections). A pool bigger
    than the server fails only under load, when "too many clients" turns questions away. None on
    SQLite (one file, no server)."""
    from sqlalchemy import text

    from bot.db.database import RECORDING_CONNECTIONS
    from bot.runtime import open_database

    if settings.database_url.startswith("sqlite"):
        return None
    db = open_database(settings)
    query = text(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
    )
    try:
        async with db.engine.connect() as conn:
            found: dict[str, str] = {name: value for name, value in (await conn.execute(query)).all()}
    except Exception as exc:  # doctor reports every failure
        return False, f"cannot read max_connections: {type(exc).__name__}"
    finally:
        await db.close()
    most = int(found["max_connections"])
    reserved = int(found.get("superuser_reserved_connections", 0)) + int(found.get("reserved_connections", 0))
    listen = 1 if settings.database_listen_url or not settings.db_pgbouncer else 0
    extra = RECORDING_CONNECTIONS + listen  # the front door's pool, the LISTEN connection
    per_process = settings.db_pool_size + settings.db_max_overflow
    need = settings.db_processes * (per_process + extra)
    sizing = (
        f"DB_PROCESSES={settings.db_processes} x (DB_POOL_SIZE={settings.db_pool_size} + "
        f"DB_MAX_OVERFLOW={settings.db_max_overflow} + {RECORDING_CONNECTIONS} front door"
        f"{' + 1 LISTEN' if listen else ''}) = {need} connections"
    )
    if settings.db_pgbouncer:
        return None, f"{sizing} to PgBouncer (DB_PGBOUNCER=true): its max_client_conn must allow them"
    usable = most - reserved
    if need > usable:
        fits = max(usable // settings.db_processes - extra, 1)
        return False, (
            f"{sizing}, but the server allows {usable} (max_connections {most} - {reserved} reserved): "
            f"lower DB_POOL_SIZE + DB_MAX_OVERFLOW to at most {fits} per process, or raise max_connections"
        )
    return True, f"{sizing} fit the server's {usable} (max_connections {most} - {reserved} reserved)"


async def check_slack(settings: Settings) -> list[tuple[bool, str]]:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10)
    results: list[tuple[bool, str]] = []
    try:
        auth = await client.auth_test()
        results.append((True, f"SLACK_BOT_TOKEN works: team {auth.get('team')} as {auth.get('user')}"))
    except SlackApiError as exc:
        results.append((False, f"Slack rejected SLACK_BOT_TOKEN: {exc.response.get('error')}"))
    except Exception as exc:  # doctor reports every failure
        results.append((False, f"cannot reach Slack at {settings.slack_api_url} (SLACK_API_URL): {exc}"))
    if settings.slack_app_token:
        try:
            await client.apps_connections_open(app_token=settings.slack_app_token)
            results.append((True, "SLACK_APP_TOKEN can open a Socket Mode connection"))
        except SlackApiError as exc:
            results.append((False, f"Slack rejected SLACK_APP_TOKEN: {exc.response.get('error')}"))
        except Exception as exc:  # doctor reports every failure
            results.append((False, f"cannot reach Slack for SLACK_APP_TOKEN: {exc}"))
    return results


async def check_slack_oauth(settings: Settings) -> list[tuple[bool | None, str]]:
    """OAuth mode: the app's credentials, SLACK_TOKEN_KEY against the stored tokens, and each
    installation's token with auth.test, one line per workspace (a revoked one names itself)."""
    from cryptography.fernet import Fernet, InvalidToken
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient
    from sqlmodel import select

    from bot.db.models import SlackInstallation
    from bot.runtime import open_database

    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    results: list[tuple[bool | None, str]] = []
    try:  # a made-up code: Slack checks the client id and secret before the code
        await client.oauth_v2_access(
            client_id=settings.slack_client_id or "",
            client_secret=settings.slack_client_secret or "",
            code="switchboard-doctor",
        )
        results.append((False, "Slack accepted a made-up OAuth code (is SLACK_API_URL Slack's?)"))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("invalid_code", "invalid_grant", "code_already_used"):
            results.append((True, "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are accepted by Slack"))
        else:
            results.append((False, f"Slack rejected SLACK_CLIENT_ID/SLACK_CLIENT_SECRET: {error}"))
    except Exception as exc:  # doctor reports every failure
        return [(False, f"cannot reach Slack at {settings.slack_api_url} (SLACK_API_URL): {exc}")]
    db = open_database(settings)
    try:
        async with db.session() as s:
            rows = list((await s.exec(select(SlackInstallation))).all())
    except Exception as exc:  # doctor reports every failure
        return [*results, (False, f"cannot read the installations: {type(exc).__name__}")]
    finally:
        await db.close()
    if not rows:
        return [*results, (None, "no workspace has installed the app yet: open /slack/install")]
    fernet = Fernet(settings.slack_token_key or "")
    for row in rows:
        where = f"org {row.enterprise_id} (org-wide)" if not row.team_id else f"workspace {row.team_id}"
        try:
            token = fernet.decrypt(row.bot_token.encode()).decode()
        except InvalidToken:
            results.append((False, f"{where}: SLACK_TOKEN_KEY cannot decrypt its token (another key?)"))
            continue
        try:
            auth = await client.auth_test(token=token)
            results.append((True, f"{where}: its token works, as {auth.get('user')}"))
        except SlackApiError as exc:
            error = exc.response.get("error")
            reinstall = "reinstall at /slack/install"
            results.append((False, f"{where}: Slack rejected its token: {error} ({reinstall})"))
        except Exception as exc:  # doctor reports every failure
            results.append((False, f"{where}: cannot reach Slack at {settings.slack_api_url}: {exc}"))
    return results


async def check_model(settings: Settings) -> tuple[bool | None, str]:
    from bot.runtime import llm_client

    client = llm_client(settings)
    if client is None:
        return None, "no model configured (OPENAI_API_KEY / OPENAI_BASE_URL): conversations will say so"
    try:
        response = await client.chat.completions.create(
            model=settings.openai_model, messages=[{"role": "user", "content": "Reply with the word ok."}]
        )
        used = response.usage.total_tokens if response.usage else "?"
        return True, f"{settings.openai_model} answers at {client.base_url} ({used} tokens spent)"
    except Exception as exc:  # doctor reports every failure
        return False, explain_model_error(exc, settings)
    finally:
        await client.close()


async def doctor(env: Mapping[str, str] | None = None) -> int:
    """Print one line per check; exit 1 when anything needs fixing."""
    failed = 0

    def report(ok: bool | None, what: str, text: str) -> None:
        nonlocal failed
        failed += ok is False
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
        print(f"{mark}  {what}: {text}", flush=True)

    try:
        settings = load_settings(env)
        report(True, "settings", "every required setting is present and well formed")
    except ConfigError as exc:
        about = f" ({describe(exc.setting)})" if exc.setting else ""  # the docs table's words
        report(False, "settings", f"{exc}{about}")
        try:
            settings = load_settings(env, need_slack=False)
        except ConfigError:
            return 1
    ok, text = await check_database(settings)
    report(ok, "database", text)
    if ok and (pool := await check_pool(settings)) is not None:
        report(pool[0], "database pool", pool[1])
    if settings.slack_bot_token:
        for ok, text in await check_slack(settings):
            report(ok, "slack", text)
    elif settings.oauth:
        for ok_oauth, text in await check_slack_oauth(settings):
            report(ok_oauth, "slack", text)
    ok_model, text = await check_model(settings)
    report(ok_model, "model", text)
    print("All checks passed." if not failed else f"{failed} check(s) failed.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(asyncio.run(doctor()))
