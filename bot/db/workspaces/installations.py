"""Installations and OAuth states in the bot's own database, for Bolt's OAuth flow.

slack_sdk's SQLAlchemy stores keep tokens in plain text and create their own tables outside our
migrations; this small store keeps one row per workspace (or Grid org), the bot token encrypted
with SLACK_TOKEN_KEY, and implements the two interfaces Bolt needs.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from bot.db.models import GridWorkspace, OAuthState, SlackInstallation, utcnow

if TYPE_CHECKING:
    from bot.db.database import Database

log = logging.getLogger(__name__)
INSTALLATIONS = SlackInstallation.__table__  # type: ignore[attr-defined]


class Installations(AsyncInstallationStore):
    """One row per installed workspace; an org-wide install is stored with team_id "".

    Work resumed from the database knows only its team id, so the org of each Grid workspace
    seen in a request is kept (`remember_org`) and a lookup by team alone falls back to that
    org's org-wide installation.
    """

    def __init__(self, db: Database, key: str) -> None:
        self.db = db
        self.fernet = Fernet(key)
        self._orgs: dict[str, str] = {}  # team -> enterprise already stored by this process

    async def remember_org(self, team_id: str, enterprise_id: str) -> None:
        """Workspace `team_id` belongs to Grid org `enterprise_id` (written when it changes)."""
        if not team_id or not enterprise_id or self._orgs.get(team_id) == enterprise_id:
            return
        for _ in range(2):  # a concurrent first insert wins; the second pass updates it
            async with self.db.session() as s:
                row = await s.get(GridWorkspace, team_id)
                row = row or GridWorkspace(team_id=team_id, enterprise_id=enterprise_id)
                row.enterprise_id, row.seen_at = enterprise_id, utcnow()
                s.add(row)
                try:
                    await s.commit()
                    break
                except IntegrityError:
                    await s.rollback()
        self._orgs[team_id] = enterprise_id

    async def enterprise_of(self, team_id: str) -> str | None:
        """The Grid org a workspace was last seen in, if any."""
        if team_id in self._orgs:
            return self._orgs[team_id]
        async with self.db.session() as s:
            row = await s.get(GridWorkspace, team_id)
        return row.enterprise_id if row else None

    async def bot_users(self) -> dict[str, str]:
        """Each known workspace's bot user id (org-wide installs: each workspace seen of the org)."""
        async with self.db.session() as s:
            rows = (await s.exec(select(SlackInstallation))).all()
            orgs = (await s.exec(select(GridWorkspace))).all()
        by_org = {r.enterprise_id: r.bot_user_id for r in rows if not r.team_id and r.bot_user_id}
        found = {o.team_id: by_org[o.enterprise_id] for o in orgs if o.enterprise_id in by_org}
        return found | {r.team_id: r.bot_user_id for r in rows if r.team_id and r.bot_user_id}

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        """One upsert: a read finding no row does not stop a second callback of the same
        workspace from inserting it first (the later insert broke the key: an error page)."""
        enterprise, team = _keys(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        fields = {
            "is_enterprise_install": bool(bot.is_enterprise_install),
            "app_id": bot.app_id,
            "bot_id": bot.bot_id,
            "bot_user_id": bot.bot_user_id,
            "bot_scopes": ",".join(bot.bot_scopes),
            "bot_token": self.fernet.encrypt(bot.bot_token.encode()).decode(),
            "installer_user_id": getattr(bot, "user_id", None),
        }
        upsert = (
            self.db.insert_statement(INSTALLATIONS)
            .values(enterprise_id=enterprise, team_id=team, installed_at=utcnow(), **fields)
            .on_conflict_do_update(index_elements=["enterprise_id", "team_id"], set_=fields)
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(upsert)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        row = await self._row(enterprise_id, team_id, is_enterprise_install)
        if row is None:
            return None
        return Bot(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id or None,
            team_id=row.team_id or None,
            bot_token=self.fernet.decrypt(row.bot_token.encode()).decode(),
            bot_id=row.bot_id or "",
            bot_user_id=row.bot_user_id or "",
            bot_scopes=row.bot_scopes,
            is_enterprise_install=row.is_enterprise_install,
            installed_at=row.installed_at.timestamp(),
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        if user_id is not None:
            return None  # bot tokens only: no user tokens are kept
        bot = await self.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        if bot is None:
            return None
        return Installation(
            app_id=bot.app_id,
            enterprise_id=bot.enterprise_id,
            team_id=bot.team_id,
            bot_token=bot.bot_token,
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_scopes=bot.bot_scopes,
            user_id="",
            is_enterprise_install=bot.is_enterprise_install,
            installed_at=bot.installed_at,
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is not None:
            return  # no user tokens are kept
        async with self.db.session() as s:
            q = delete(SlackInstallation).where(col(SlackInstallation.team_id) == (team_id or ""))
            if enterprise_id is not None or not team_id:
                q = q.where(col(SlackInstallation.enterprise_id) == (enterprise_id or ""))
            await s.exec(q)
            await s.commit()

    async def _row(
        self, enterprise_id: str | None, team_id: str | None, org_wide: bool | None
    ) -> SlackInstallation | None:
        async with self.db.session() as s:
            if not org_wide and team_id:
                q = select(SlackInstallation).where(SlackInstallation.team_id == team_id)
                if enterprise_id:  # "" too: a workspace that joined its Grid org after installing
                    q = q.where(col(SlackInstallation.enterprise_id).in_((enterprise_id, "")))
                row = (await s.exec(q)).first()
                if row is not None:
                    return row
            if not enterprise_id and team_id:  # resumed work knows only its team id
                enterprise_id = await self.enterprise_of(team_id)
            if not enterprise_id:
                return None
            # a workspace of a Grid org whose app was installed org-wide
            q = select(SlackInstallation).where(
                SlackInstallation.enterprise_id == enterprise_id, SlackInstallation.team_id == ""
            )
            return (await s.exec(q)).first()


class OAuthStates(AsyncOAuthStateStore):
    """States that expire after `expiration_seconds` and can be used once."""

    def __init__(self, db: Database, expiration_seconds: int = 600) -> None:
        self.db = db
        self.expiration_seconds = expiration_seconds

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        async with self.db.session() as s:
            await s.exec(delete(OAuthState).where(col(OAuthState.expires_at) < time.time()))
            s.add(OAuthState(state=state, expires_at=time.time() + self.expiration_seconds))
            await s.commit()
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.db.session() as s:
            result = await s.exec(
                delete(OAuthState).where(
                    col(OAuthState.state) == state, col(OAuthState.expires_at) >= time.time()
                )
            )
            await s.commit()
        return bool(result.rowcount)


def _keys(enterprise_id: str | None, team_id: str | None, org_wide: bool | None) -> tuple[str, str]:
    return enterprise_id or "", "" if org_wide else team_id or ""
