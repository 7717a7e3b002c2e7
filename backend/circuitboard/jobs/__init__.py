"""Graph jobs: a queue persisted in the database, one worker thread that owns the Engine, live progress."""

from circuitboard.jobs.host import EngineBusy, EngineHost, EngineUnavailable, InvalidTarget, PromptTooLong
from circuitboard.jobs.models import GraphRequest, JobView, Submitted
from circuitboard.jobs.service import JobFinished, JobNotFound, JobService, QueueFull, SlugTaken

__all__ = [
    "EngineBusy",
    "EngineHost",
    "EngineUnavailable",
    "GraphRequest",
    "InvalidTarget",
    "JobFinished",
    "JobNotFound",
    "JobService",
    "JobView",
    "PromptTooLong",
    "QueueFull",
    "SlugTaken",
    "Submitted",
]
