"""/api/migration/...: jobs, batches, completion — for users with role alpha while GIMA_MIGRATION_ENABLED is on."""

from __future__ import annotations

import math
import time

from aiohttp import web

from .. import appkeys
from ..auth.sessions import Principal, require_user
from ..errors import ApiError, invalid, not_found
from ..ids import new_id, path_id
from ..validation import Field, parse_json, read_json, read_raw, whole_number
from .model import MigrationJob, parse_batch, queued_form

_MAX_SEQ = 1_000_000


async def _alpha(request: web.Request) -> Principal:
    """The lane does not exist for anyone else: flag off or no alpha role is a plain 404."""
    if not request.app[appkeys.SETTINGS].migration_enabled:
        raise not_found("resource")
    principal = await require_user(request)
    if "alpha" not in principal.user.roles:
        raise not_found("resource")
    return principal


async def _job(request: web.Request, principal: Principal) -> MigrationJob:
    """As stored: another process may have imported into it or completed it since this one's lane last looked."""
    job_id = path_id(request.match_info["jobId"], "job")
    job = await request.app[appkeys.STORE].get_migration_job(principal.user.id, job_id)
    if job is None:
        raise not_found("job")
    return job

JOB_BODY = {"source": Field(str, required=True), "totalConversations": Field(int)}


def _answer(request: web.Request, job: MigrationJob, status: int) -> web.Response:
    return web.json_response({"job": job.public(request.app[appkeys.MIGRATION].poll_after_ms(job))}, status=status)


async def create_job(request: web.Request) -> web.Response:
    principal = await _alpha(request)
    body = await read_json(request, JOB_BODY)
    if body["source"] != "indexeddb":
        raise invalid("source must be indexeddb")
    total = body["totalConversations"]
    if total is not None and not 0 <= total <= 10_000_000:
        raise invalid("totalConversations must be between 0 and 10,000,000")
    job = MigrationJob(new_id(), principal.user.id, "indexeddb", total, created_at=time.time())
    await request.app[appkeys.STORE].create_migration_job(job)
    request.app[appkeys.MIGRATION].track(job)
    return _answer(request, job, 201)


async def _read_batch_body(request: web.Request) -> object:
    """Batches may be larger than other requests: their own byte limit (validation.body_limit)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    return parse_json(await read_raw(request))


async def put_batch(request: web.Request) -> web.Response:
    principal = await _alpha(request)
    job = await _job(request, principal)
    seq = whole_number(request.match_info["seq"], "seq", 0, _MAX_SEQ)
    if job.finished or job.complete_requested:
        raise ApiError(409, "conflict", f"the job is {job.status if not job.complete_requested else 'completing'}")
    lane = request.app[appkeys.MIGRATION]
    with lane.receiving(job.id):  # from the check above: a completion sent meanwhile waits for this batch
        conversations = parse_batch(await _read_batch_body(request), request.app[appkeys.SETTINGS].migration_batch_limits)
        payload = queued_form(conversations)
        if not await request.app[appkeys.STORE].add_migration_batch(job.id, seq, payload):
            job = await _job(request, principal)  # the same seq again is a no-op; a job that ended meanwhile is not
            if job.finished:
                raise ApiError(409, "conflict", f"the job is {job.status}")
    lane.track(job)
    return _answer(request, job, 202)


async def complete_job(request: web.Request) -> web.Response:
    principal = await _alpha(request)
    job = await _job(request, principal)
    if not job.complete_requested and not job.finished:
        job.complete_requested = True
        job = await request.app[appkeys.STORE].save_migration_state(job) or job
        request.app[appkeys.MIGRATION].track(job)
    return _answer(request, job, 202)


async def get_job(request: web.Request) -> web.Response:
    principal = await _alpha(request)
    job = await _job(request, principal)
    lane = request.app[appkeys.MIGRATION]
    wait_s = lane.poll_wait_s(job.id)
    if wait_s > 0:  # polled sooner than pollAfterMs said: the migration bucket's answer, not chat's
        request.app[appkeys.METRICS].rate_limited.labels("migration").inc()
        raise ApiError(429, "rate_limited", "poll again after pollAfterMs", retry_after_s=round(wait_s, 3),
                       headers={"RateLimit-Policy": '"migration-poll";q=1;w=1',
                                "RateLimit": f'"migration-poll";r=0;t={math.ceil(wait_s)}'})
    lane.polled(job)
    return _answer(request, job, 200)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/migration/jobs", create_job)
    app.router.add_put("/api/migration/jobs/{jobId}/batches/{seq}", put_batch)
    app.router.add_post("/api/migration/jobs/{jobId}/complete", complete_job)
    app.router.add_get("/api/migration/jobs/{jobId}", get_job)
