"""Graph jobs: a queue persisted in the database, one worker thread that owns the Engine, live progress."""

from circuitboard.jobs.host import EngineBusy, EngineHost, EngineUnavailable, InvalidTarget, PromptTooLong
from circuitboard.jobs.model_calls import ModelCalls
from circuitboard.jobs.models import GraphRequest, JobState, JobView, Submitted
from circuitboard.jobs.service import JobFinished, JobNotFound, JobService, QueueFull, QueueShareFull, SlugTaken

__all__ = [
    "EngineBusy",
    "EngineHost",
    "EngineUnavailable",
    "GraphRequest",
    "InvalidTarget",
    "JobFinished",
    "JobNotFound",
    "JobState",
    "JobService",
    "JobView",
    "ModelCalls",
    "PromptTooLong",
    "QueueFull",
    "QueueShareFull",
    "SlugTaken",
    "Submitted",
]
