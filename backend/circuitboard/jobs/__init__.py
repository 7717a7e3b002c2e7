"""Jobs (graphs, validations, atlas builds): a queue persisted in the database, workers that own an Engine (a
thread of this process, or `circuitboard worker` processes on Redis), live progress."""

from circuitboard.jobs.atlas import AtlasJob, AtlasSummary
from circuitboard.jobs.host import EngineBusy, EngineHost, EngineUnavailable, InvalidTarget, PromptTooLong
from circuitboard.jobs.model_calls import ModelCalls
from circuitboard.jobs.models import GraphRequest, JobState, JobView, Submitted, ValidateJob
from circuitboard.jobs.service import (
    AtlasBusy,
    JobFinished,
    JobNotDone,
    JobNotFound,
    JobService,
    QueueFull,
    QueueShareFull,
    SlugTaken,
)

__all__ = [
    "AtlasBusy",
    "AtlasJob",
    "AtlasSummary",
    "EngineBusy",
    "EngineHost",
    "EngineUnavailable",
    "GraphRequest",
    "InvalidTarget",
    "JobFinished",
    "JobNotDone",
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
    "ValidateJob",
]
