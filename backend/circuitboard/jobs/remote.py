"""Requests that need a preset's model but are not jobs (token ids for the cache key, the token preview,
interventions, decoder rows), in distributed mode: a request/response over Redis lists.

The API's `RemoteHost` (the ModelHost of a preset) RPUSHes a call on `cb:calls:{preset}:{lane}` and BLPOPs its
reply key; a worker's `CallServer` threads BLPOP the lanes and answer through the worker's EngineHost, whose
model lock they share with the running job, exactly as the request threads of a single process do. Two lanes,
so that tokenizer-only calls (every graph request's cache key) never wait behind interventions that wait for
the model. A call no worker took before its deadline is dropped, and the API answers 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import redis
import torch

from circuitboard.engine.types import EngineInfo, InterventionRequest, InterventionResult, TokenizeResult
from circuitboard.jobs.host import EngineBusy, EngineHost, EngineUnavailable, InvalidTarget, PromptTooLong
from circuitboard.jobs.models import EngineState
from circuitboard.jobs.redis_events import PREFIX
from circuitboard.jobs.registry import Heartbeat, WorkerRegistry

log = logging.getLogger(__name__)

Lane = Literal["tokenizer", "model"]
_LANES: dict[str, Lane] = {
    "encode": "tokenizer",
    "check_tokens": "tokenizer",
    "feature_directions": "tokenizer",  # decoder rows: no forward pass, no model lock
    "tokenize": "model",
    "intervene": "model",
}
_TOKENIZER_WAIT_S = 10.0
_SLACK_S = 5.0  # beyond the call's own wait: the trip through Redis and a busy worker's queue of calls
_REPLY_TTL_S = 60
_HEARTBEATS_CACHE_S = 0.5


def calls_key(preset: str, lane: Lane) -> str:
    return f"{PREFIX}:calls:{preset}:{lane}"


# ------------------------------------------------------------------------------------------- errors
def encode_error(e: Exception) -> dict[str, Any]:
    if isinstance(e, PromptTooLong):
        return {"type": "PromptTooLong", "n_tokens": e.n_tokens, "limit": e.limit}
    if isinstance(e, InvalidTarget):
        return {"type": "InvalidTarget", "field": e.field, "index": e.index, "message": str(e)}
    if isinstance(e, EngineUnavailable):
        return {"type": "EngineUnavailable", "state": e.state, "message": str(e)}
    if isinstance(e, EngineBusy):
        return {"type": "EngineBusy", "message": str(e)}
    if isinstance(e, ValueError):  # the engine rejecting an input: the message names the field
        return {"type": "ValueError", "message": str(e)}
    return {"type": "EngineUnavailable", "state": "failed", "message": f"worker: {type(e).__name__}: {e}"}


def decode_error(err: dict[str, Any]) -> Exception:
    kind = err.get("type")
    if kind == "PromptTooLong":
        return PromptTooLong(int(err["n_tokens"]), int(err["limit"]))
    if kind == "InvalidTarget":
        return InvalidTarget(str(err["field"]), int(err["index"]), str(err["message"]))
    if kind == "EngineBusy":
        return EngineBusy(str(err["message"]))
    if kind == "ValueError":
        return ValueError(str(err["message"]))
    return EngineUnavailable(err.get("state", "failed"), str(err.get("message")))


# ------------------------------------------------------------------------------------------- the API's side
class RemoteHost:
    """The ModelHost of one preset whose engines live in worker processes."""

    def __init__(self, client: redis.Redis, registry: WorkerRegistry, preset: str, max_prompt_tokens: int) -> None:
        self.client, self.registry, self.preset = client, registry, preset
        self.max_prompt_tokens = max_prompt_tokens
        self._beats: tuple[float, list[Heartbeat]] = (0.0, [])

    def _workers(self) -> list[Heartbeat]:
        at, beats = self._beats
        if time.monotonic() - at > _HEARTBEATS_CACHE_S:
            beats = self.registry.workers(self.preset)
            self._beats = (time.monotonic(), beats)
        return beats

    @property
    def state(self) -> EngineState:
        states = {b.state for b in self._workers()}
        order: tuple[EngineState, ...] = ("ready", "loading", "failed")
        return next((s for s in order if s in states), "none")

    @property
    def error(self) -> str | None:
        return next((b.error for b in self._workers() if b.error), None)

    @property
    def info(self) -> EngineInfo | None:
        return next((b.info for b in self._workers() if b.state == "ready" and b.info is not None), None)

    def require_info(self) -> EngineInfo:
        info = self.info
        if info is not None:
            return info
        state = self.state
        if state == "loading":
            raise EngineUnavailable("loading", f"preset {self.preset!r}: its workers are still loading the model")
        hint = f"; start one with `circuitboard worker --preset {self.preset}`"
        raise EngineUnavailable("none", f"preset {self.preset!r}: no live worker serves it{hint}")

    def require(self) -> RemoteHost:
        """Itself, once a worker is ready: what callers read of an engine here is its `info`."""
        self.require_info()
        return self

    def names(self) -> tuple[str, str]:
        info = self.require_info()
        return str(info.model_name), str(info.transcoder_name)

    def fingerprint(self) -> str:
        return str(self.require_info().fingerprint)

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = [int(t) for t in self._call("encode", {"prompt": prompt}, _TOKENIZER_WAIT_S)]
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(len(ids), self.max_prompt_tokens)
        return ids

    def check_tokens(self, texts: list[str], field: str = "target_tokens") -> None:
        self._call("check_tokens", {"texts": texts, "field": field}, _TOKENIZER_WAIT_S)

    def tokenize(
        self, prompt: str, top_k: int, wait_s: float, targets: Sequence[str] = ()
    ) -> tuple[TokenizeResult, bool]:
        args = {"prompt": prompt, "top_k": top_k, "wait_s": wait_s, "targets": list(targets)}
        out = self._call("tokenize", args, wait_s)
        return TokenizeResult.model_validate(out["result"]), bool(out["busy"])

    def intervene(self, req: InterventionRequest, wait_s: float) -> InterventionResult:
        args = {"req": req.model_dump(mode="json"), "wait_s": wait_s}
        return InterventionResult.model_validate(self._call("intervene", args, wait_s))

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor:
        rows = self._call("feature_directions", {"features": [list(f) for f in features]}, _TOKENIZER_WAIT_S)
        return torch.tensor(rows, dtype=torch.float32)

    def _call(self, method: str, args: dict[str, Any], wait_s: float) -> Any:
        self.require_info()
        reply = f"{PREFIX}:reply:{uuid.uuid4().hex}"
        timeout = wait_s + _SLACK_S
        call = {"method": method, "args": args, "reply": reply, "deadline": time.time() + timeout}
        self.client.rpush(calls_key(self.preset, _LANES[method]), json.dumps(call))
        got = self.client.blpop([reply], timeout=timeout)
        if got is None:
            raise EngineBusy(f"preset {self.preset!r}: no worker answered within {timeout:.0f} s; try again")
        answer = json.loads(got[1])
        if "error" in answer:
            raise decode_error(answer["error"])
        return answer["ok"]


# ------------------------------------------------------------------------------------------- the worker's side
class CallServer:
    """Threads of a worker process that answer the calls of its preset: one for the tokenizer lane, `model_threads`
    for the model lane (they wait for the model lock as the request threads of a single process do)."""

    def __init__(self, client: redis.Redis, host: EngineHost, preset: str, model_threads: int = 2) -> None:
        self.client, self.host, self.preset = client, host, preset
        self.stopping = threading.Event()
        model: list[Lane] = ["model"] * model_threads
        lanes: list[Lane] = ["tokenizer", *model]
        self.threads = [
            threading.Thread(target=self._serve, args=(lane,), name=f"circuitboard-calls-{lane}", daemon=True)
            for lane in lanes
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)

    def _serve(self, lane: Lane) -> None:
        key = calls_key(self.preset, lane)
        while not self.stopping.is_set():
            try:
                got = self.client.blpop([key], timeout=1)
            except redis.RedisError as e:
                log.warning("calls: lost Redis (%s)", e)
                self.stopping.wait(1.0)
                continue
            if got is not None:
                self._answer(json.loads(got[1]))

    def _answer(self, call: dict[str, Any]) -> None:
        if time.time() > float(call["deadline"]):
            return  # the caller has given up
        try:
            answer: dict[str, Any] = {"ok": self._run(call["method"], call["args"])}
        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller, never kills the thread
            if not isinstance(e, (ValueError, EngineBusy, EngineUnavailable, PromptTooLong)):
                log.error("call %s failed:\n%s", call["method"], traceback.format_exc())
            answer = {"error": encode_error(e)}
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(call["reply"], json.dumps(answer))
        pipe.expire(call["reply"], _REPLY_TTL_S)
        pipe.execute()

    def _run(self, method: str, args: dict[str, Any]) -> Any:
        host = self.host
        if method == "encode":
            return host.token_ids(args["prompt"])  # the API applies its own length limit
        if method == "check_tokens":
            host.check_tokens(args["texts"], args["field"])
            return None
        if method == "tokenize":
            result, busy = host.tokenize(args["prompt"], args["top_k"], args["wait_s"], args["targets"])
            return {"result": result.model_dump(mode="json"), "busy": busy}
        if method == "intervene":
            req = InterventionRequest.model_validate(args["req"])
            return host.intervene(req, args["wait_s"]).model_dump(mode="json")
        if method == "feature_directions":
            pairs = [(int(a), int(b)) for a, b in args["features"]]
            return host.feature_directions(pairs).float().tolist()
        raise ValueError(f"calls: unknown method {method!r}")
