"""The job record decides what a redelivered message runs (jobs/worker_process.py): store-level, no Redis."""

from __future__ import annotations

import pytest

from circuitboard.store import Store

pytestmark = pytest.mark.distributed


def test_claim_counts_attempts_then_fails_with_a_message(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cb.sqlite'}")
    try:
        store.jobs.create("j", "a prompt", {"prompt": "a prompt"}, None, queue="tiny")
        first = store.jobs.claim("j", "worker-1", max_attempts=2)
        assert first.status == "running" and first.worker == "worker-1" and first.attempts == 1
        # worker-1 died: the broker delivers the message again, to worker-2
        second = store.jobs.claim("j", "worker-2", max_attempts=2)
        assert second.status == "running" and second.worker == "worker-2" and second.attempts == 2
        # worker-2 died too: no third run
        third = store.jobs.claim("j", "worker-3", max_attempts=2)
        assert third.status == "failed" and "stopped mid-job 2 time(s)" in third.error
        assert third.attempts == 2 and store.jobs.claim("j", "worker-4", max_attempts=2).status == "failed"
        # a cancelled (terminal) job is never started by a late message
        store.jobs.create("k", "b", {"prompt": "b"}, None, queue="tiny")
        assert store.jobs.finish("k", "cancelled")
        assert store.jobs.claim("k", "worker-1", max_attempts=2).status == "cancelled"
        assert store.jobs.claim("nope", "worker-1", max_attempts=2) is None
        assert store.jobs.queued_ids("tiny") == [] and store.jobs.queued_ids("tiny", older_than_s=0) == []
    finally:
        store.close()


def test_lost_messages_are_found_by_age(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cb.sqlite'}")
    try:
        store.jobs.create("old", "p", {"prompt": "p"}, None, queue="tiny")
        store.jobs.create("other", "p", {"prompt": "p"}, None, queue="other")
        assert store.jobs.queued_ids("tiny", older_than_s=3600) == []
        assert store.jobs.queued_ids("tiny", older_than_s=0) == ["old"]
        assert store.jobs.queued_ids() == ["old", "other"]
    finally:
        store.close()
