"""Scheduled digests: the `digestschedule` table is the truth; APScheduler only keeps time.

Every process that runs the scheduler rebuilds its jobs from the table, re-reads it every
`sync_seconds` (so a separate clock process sees schedules added by web processes), and records
each (schedule, fire time) as a `digest` job of the work engine (bot/work), keyed by both: two
clocks, a catch-up at start and a manual run all record the same job once, and the engine runs
it once, taking it over if its process dies. The claim row keeps each fire time's outcome
(posted, quiet, failed) for the next period's start. The digest carries message metadata
(bot/digests/delivery.py), so a redo first looks in the channel: a digest posted just before its
poster died is only marked posted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_sdk.errors import SlackApiError

from bot.db.models import DigestSchedule
from bot.db.workspaces.digest_schedules import PAUSED
from bot.digests.delivery import delete_parts, find_digest, post_digest, span, utc
from bot.digests.grammar import canonical, fires, make_trigger, period_of, previous_fire_time
from bot.digests.permissions import why_not_post
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.output.surface import unfurl_allowed
from bot.work import Job
from bot.work.traced_run import RunFailed, traced_run
from orchestrators.workflows import summarize_channel
from tools.toolkit.errors import InvariantError

log = logging.getLogger(__name__)

GRACE = timedelta(hours=1)  # a fire time missed by less than this is caught up (once) at start
MAX_PERIOD = timedelta(days=31)
TAKEN_OVER = "taken over"  # our lease lapsed and another process now posts this fire time
KIND = "digest"


class DigestScheduler:
    def __init__(
        self,
        rt: Runtime,
        *,
        second: str = "0",
        retry_delay: float = 60.0,
        sync_seconds: float = 30.0,
    ) -> None:
        self.rt = rt
        self.second = second  # tests use "*" so a minute schedule fires every second
        self.retry_delay = retry_delay
        self.sync_seconds = sync_seconds
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._known: dict[int, tuple[str, str]] = {}
        self._outcomes: dict[int, str] = {}  # job id -> what its run here did, for `run`'s caller
        rt.work.kind(KIND, self._run_job, max_age=GRACE)

    async def start(self) -> None:
        """Build jobs from the table, catch up on what was missed, then keep time."""
        self.scheduler.start()
        await self.sync()
        self.scheduler.add_job(self.sync, "interval", seconds=self.sync_seconds, id="sync", coalesce=True)
        for schedule in await self.rt.db.digests.all():
            await self.catch_up(schedule)

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def sync(self) -> None:
        """Make the jobs match the table: added, changed and removed schedules."""
        schedules = {
            s.id: s for s in await self.rt.db.digests.all() if s.id is not None and s.last_status != PAUSED
        }
        for sid in set(self._known) - set(schedules):
            self._remove_job(sid)
        for sid, s in schedules.items():
            if self._known.get(sid) != (s.cron, s.timezone):
                self._add_job(s)

    def _add_job(self, schedule: DigestSchedule) -> None:
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        if not fires(schedule.cron, schedule.timezone, datetime.now(UTC), self.second):
            # Stored before schedules were checked: APScheduler would search for it for seconds.
            log.warning("digest %s never fires (%r); not scheduled", schedule.id, schedule.cron)
            self._remove_job(schedule.id)
            self._known[schedule.id] = (schedule.cron, schedule.timezone)
            return
        trigger = make_trigger(schedule.cron, schedule.timezone, self.second)
        self.scheduler.add_job(
            self._fire,
            trigger,
            args=[schedule.id],
            id=f"digest-{schedule.id}",
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=int(GRACE.total_seconds()),
            max_instances=3,
        )
        self._known[schedule.id] = (schedule.cron, schedule.timezone)

    def _remove_job(self, schedule_id: int) -> None:
        if self.scheduler.get_job(f"digest-{schedule_id}"):
            self.scheduler.remove_job(f"digest-{schedule_id}")
        self._known.pop(schedule_id, None)

    async def added(self, schedule: DigestSchedule) -> None:
        self._add_job(schedule)

    async def removed(self, schedule_id: int) -> None:
        self._remove_job(schedule_id)

    def next_run(self, schedule_id: int) -> datetime | None:
        job = self.scheduler.get_job(f"digest-{schedule_id}")
        return job.next_run_time if job else None

    async def _fire(self, schedule_id: int) -> None:
        """The APScheduler job: work out which fire time this is, then run it as a tracked task."""
        schedule = await self.rt.db.digests.get(schedule_id)
        if schedule is None:
            self._remove_job(schedule_id)
            return
        fire = previous_fire_time(schedule.cron, schedule.timezone, datetime.now(UTC), self.second)
        if fire is not None:
            await self.record(schedule, canonical(fire))

    async def catch_up(self, schedule: DigestSchedule) -> None:
        """At start: the latest fire time missed while no scheduler ran, if recent enough."""
        fire = previous_fire_time(schedule.cron, schedule.timezone, datetime.now(UTC), self.second)
        if fire is not None and datetime.now(UTC) - fire <= GRACE and fire >= schedule.created_at:
            await self.record(schedule, canonical(fire))

    async def record(
        self, schedule: DigestSchedule, fire_time: datetime, *, manual: bool = False
    ) -> tuple[int, bool]:
        """Record the fire time as a job (once, whoever records it first): (job id, new)."""
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        return await self.rt.work.submit(
            KIND,
            f"digest:{schedule.id}:{utc(fire_time).isoformat()}",
            {"schedule": schedule.id, "fire_time": utc(fire_time).isoformat(), "manual": manual},
        )

    async def run(self, schedule: DigestSchedule, fire_time: datetime, *, manual: bool = False) -> str:
        """Record the fire time and wait until it is done (here or elsewhere); what happened."""
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        job_id, new = await self.record(schedule, fire_time, manual=manual)
        if new:
            self._outcomes[job_id] = ""  # wanted: the run here keeps what it did
        state = await self.rt.work.wait(job_id)
        if outcome := self._outcomes.pop(job_id, ""):
            return outcome
        status = await self.rt.db.digests.claim_status(schedule.id, fire_time)
        return "already posted" if status and status != "claimed" else state  # done once, however it ended

    async def _run_job(self, job: Job) -> None:
        schedule = await self.rt.db.digests.get(int(job.payload["schedule"]))
        outcome = "removed"
        if schedule is not None:
            fire_time = datetime.fromisoformat(job.payload["fire_time"])
            outcome = await self._run(schedule, fire_time, job, bool(job.payload.get("manual")))
        if job.id in self._outcomes:
            self._outcomes[job.id] = outcome

    async def _run(self, schedule: DigestSchedule, fire_time: datetime, job: Job, manual: bool) -> str:
        """Claim, summarize, post; retried once; the creator hears about repeated failure."""
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        if schedule.last_status == PAUSED:
            return "paused"
        install.serve(schedule.team_id)
        why = await why_not_post(
            self.rt,
            team=schedule.team_id,
            creator=schedule.creator_id,
            source=schedule.source_channel_id,
            target=schedule.channel_id,
        )
        if why:
            await self._pause(schedule, why)
            return f"paused ({why})"
        if not await self.rt.db.digests.claim(schedule.id, fire_time):
            if await self.rt.db.digests.claim_status(schedule.id, fire_time) != "claimed":
                return "already posted"
        try:
            return await self._attempts(schedule, fire_time, job, manual, job.redo)
        except Exception:  # a digest job's boundary: mark the claim, re-raise
            # A bug: taking it over again would only repeat it (and the model's cost).
            await self.rt.db.digests.set_claim_status(schedule.id, fire_time, "failed")
            raise

    async def _attempts(
        self,
        schedule: DigestSchedule,
        fire_time: datetime,
        job: Job,
        manual: bool,
        taking_over: bool,
    ) -> str:
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        outcome = "failed"
        for attempt in (1, 2):
            try:
                # A first attempt of a fresh claim has nothing in Slack yet; any other may.
                outcome = await self._post(schedule, fire_time, job, look_first=taking_over or attempt > 1)
                if outcome == TAKEN_OVER:
                    return outcome
                await self.rt.db.digests.set_claim_status(schedule.id, fire_time, "posted")
                await self.rt.db.digests.record(schedule.id, outcome)
                return outcome
            except RunFailed as failed:
                if not failed.expected:
                    raise  # a bug: retrying would only repeat it
                error = failed.reason
                log.warning("digest %s attempt %s failed: %s", schedule.id, attempt, error)
                updated = await self.rt.db.digests.record(schedule.id, "failed", error)
                if attempt == 1:
                    await asyncio.sleep(self.retry_delay)
        await self.rt.db.digests.set_claim_status(schedule.id, fire_time, "failed")
        if updated is not None and not manual:
            await self._tell_creator(updated, error)
        return outcome if not manual else f"failed: {error}"

    async def _post(
        self, schedule: DigestSchedule, fire_time: datetime, job: Job, *, look_first: bool
    ) -> str:
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        since = await self.rt.db.digests.previous_posted(schedule.id, fire_time)
        if since is None or fire_time - since > MAX_PERIOD:
            since = fire_time - min(
                period_of(schedule.cron, schedule.timezone, fire_time, self.second), MAX_PERIOD
            )
        async with traced_run(
            self.rt,
            "digest",
            team=schedule.team_id,
            channel=schedule.channel_id,
            user=schedule.creator_id,
        ) as run:
            if look_first:
                seen = await find_digest(
                    self.rt.slack, schedule.channel_id, schedule.id, fire_time, self.rt.bot_user_id
                )
                if seen.posted:
                    run.finish("ok", error="already in Slack (posted before its poster stopped)")
                    return "posted"
                await delete_parts(self.rt.slack, schedule.channel_id, seen.parts)
            info = await self.rt.slack.conversations_info(channel=schedule.source_channel_id)
            name = info["channel"]["name"]
            reply = await summarize_channel(
                run.ctx, schedule.source_channel_id, name, since.timestamp(), fire_time.timestamp()
            )
            header = f"*Digest of #{name}* · {span(since, fire_time, schedule.timezone)}"
            if "empty" in reply.notes:
                if schedule.quiet:
                    run.finish("ok", error="quiet period: nothing posted")
                    return "quiet"
                text = f"{header}\n\nNo activity in #{name} in this period."
            else:
                text = f"{header}\n\n{reply.text}"
            await run.flush()  # the trace behind the digest is durable before it is posted
            if job.lost:
                run.finish("ok", error="lease lost: another process posts this digest")
                return TAKEN_OVER
            unfurl = all(
                [await unfurl_allowed(self.rt, c) for c in (schedule.channel_id, schedule.source_channel_id)]
            )
            await post_digest(self.rt.slack, schedule, text, fire_time, unfurl=unfurl)
        return "posted"

    async def _pause(self, schedule: DigestSchedule, why: str) -> None:
        """Stop a schedule that may no longer post, and tell its creator why and what to do."""
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        log.warning("digest %s paused: %s", schedule.id, why)
        await self.rt.db.digests.pause(schedule.id, why)
        self._remove_job(schedule.id)
        await self._dm(
            schedule.creator_id,
            f"Your digest {schedule.id} of <#{schedule.source_channel_id}> into <#{schedule.channel_id}> "
            f"is paused and posts nothing: {why}. Remove it with `/digest remove {schedule.id}` "
            "and set up one that fits.",
        )

    async def _dm(self, user: str, text: str) -> None:
        try:
            dm = (await self.rt.slack.conversations_open(users=user))["channel"]["id"]
            await self.rt.slack.chat_postMessage(channel=dm, text=text)
        except SlackApiError:
            log.exception("could not send a DM to %s", user)

    async def _tell_creator(self, schedule: DigestSchedule, error: str) -> None:
        """A schedule that keeps failing (say, the bot was removed) tells its creator by DM."""
        await self._dm(
            schedule.creator_id,
            f"Your digest {schedule.id} into <#{schedule.channel_id}> failed twice: {error}. "
            f"Invite me back to the channel, or remove it with `/digest remove {schedule.id}`.",
        )
