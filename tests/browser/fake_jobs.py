"""The fake API's job queue, in the real API's shapes (circuitboard/api/routes/jobs.py, circuitboard/jobs/models.py):
a job runs its steps in a background thread and publishes a JobView (`id, status, position, phase, done, total,
fraction, eta_s, error, kind, result_url`) after each; `GET /api/jobs/{id}`, its SSE stream, `DELETE` (cancel) and
`GET /api/jobs/{id}/result` (a finished job's result, e.g. a validation)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

FINAL = ("done", "failed", "cancelled")
PUBLIC = ("id", "status", "position", "phase", "done", "total", "fraction", "eta_s", "error", "kind", "result_url")


class JobFailed(Exception):
    """Raised by a job's `finish` to end it as failed with this message."""


class FakeJobs:
    """`with_fraction` False: the events carry no `fraction` / `eta_s` (the page then weighs the phases itself)."""

    def __init__(self, with_fraction: bool = True) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.results: dict[str, Any] = {}
        self.with_fraction = with_fraction

    def start(
        self,
        kind: str,
        phases: list[tuple[str, int]],
        seconds: float,
        finish: Callable[[dict], Any],
        **extra: Any,
    ) -> dict:
        """A queued job that walks `phases` ([(name, total)]) over `seconds`, then `finish(job)` gives its result
        (or raises JobFailed). `extra` fields stay private (the request)."""
        jid = uuid.uuid4().hex[:12]
        job = {"id": jid, "status": "queued", "position": 1, "phase": "queued", "done": 0, "total": 0, "kind": kind}
        job.update(extra)
        if kind != "graph":
            job["result_url"] = f"/api/jobs/{jid}/result"
        self.jobs[jid] = job
        threading.Thread(target=self._run, args=(job, phases, seconds, finish), daemon=True).start()
        return job

    def _run(self, job: dict, phases: list[tuple[str, int]], seconds: float, finish: Callable[[dict], Any]) -> None:
        steps = sum(total + 1 for _, total in phases)
        step = 0
        for phase, total in phases:
            for done in range(total + 1):
                if job["status"] == "cancelled":
                    return
                job.update(status="running", phase=phase, done=done, total=total, position=0)
                if self.with_fraction:
                    job.update(fraction=round(step / steps, 4), eta_s=round((steps - step) * seconds / steps, 2))
                step += 1
                time.sleep(seconds / steps)
        try:
            self.results[job["id"]] = finish(job)
        except JobFailed as e:
            job.update(status="failed", error=str(e), position=None)
            return
        job.update(status="done", phase="done", done=1, total=1, position=None)
        if self.with_fraction:
            job.update(fraction=1.0, eta_s=0.0)

    def public(self, job: dict) -> dict:
        d = {k: job[k] for k in PUBLIC if k in job}
        if job.get("slug"):
            d["slug"] = job["slug"]
        return d

    def get(self, jid: str) -> dict:
        if jid not in self.jobs:
            raise HTTPException(404, f"job: no job {jid!r}")
        return self.jobs[jid]

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/api/jobs/{jid}")
        def job_status(jid: str):
            return self.public(self.get(jid))

        @app.delete("/api/jobs/{jid}")
        def job_cancel(jid: str):
            job = self.get(jid)
            if job["status"] not in FINAL:
                job.update(status="cancelled", position=None)
            return self.public(job)

        @app.get("/api/jobs/{jid}/result")
        def job_result(jid: str):
            job = self.get(jid)
            if job["status"] != "done" or jid not in self.results:
                raise HTTPException(409, f"job: {job['status']}, no result yet")
            return self.results[jid]

        @app.get("/api/jobs/{jid}/events")
        async def events(jid: str):
            self.get(jid)

            async def gen():
                last = None
                while True:
                    d = self.public(self.jobs[jid])
                    if d != last:
                        name = "progress" if d["status"] == "running" else d["status"]
                        yield f"event: {name}\ndata: {json.dumps(d)}\n\n"
                        last = d
                    if d["status"] in FINAL:
                        return
                    await asyncio.sleep(0.05)

            return StreamingResponse(gen(), media_type="text/event-stream")
