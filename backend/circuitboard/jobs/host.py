"""EngineHost: the one loaded engine, its load state, and the one lock that serialises use of the model.

The worker thread loads the engine and runs attributions while holding `model_lock`. Requests that need the
model (token preview, interventions) take the same lock with a timeout instead of racing the worker: the
engine's forward hooks are not safe to share between two concurrent passes.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from circuitboard.engine.types import (
    AttributionParams,
    EngineInfo,
    InterventionRequest,
    InterventionResult,
    ProgressEvent,
    TargetToken,
    TokenInfo,
    TokenizeResult,
)
from circuitboard.engine.validation import ValidateRequest, ValidationResult
from circuitboard.jobs.models import EngineState

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class EngineAPI(Protocol):
    """What the host asks of an engine: circuitboard.engine.session.Engine (or a test double of it)."""

    @property
    def info(self) -> EngineInfo: ...

    def encode(self, prompt: str) -> torch.Tensor: ...

    def decode_token(self, token_id: int) -> str: ...

    def single_token(self, text: str, field: str) -> int: ...

    def target_token(self, text: str, probs: torch.Tensor | None = None) -> TargetToken: ...

    def tokenize(self, prompt: str, top_k: int = 10, targets: Sequence[str] = ()) -> TokenizeResult: ...

    def attribute(
        self,
        prompt: str,
        params: AttributionParams,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]: ...

    def intervene(self, req: InterventionRequest) -> InterventionResult: ...

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor: ...

    def validate(
        self, graph: dict[str, Any], req: ValidateRequest, progress: Callable[[ProgressEvent], None] | None = None
    ) -> ValidationResult: ...


EngineFactory = Callable[[], EngineAPI]


class ModelHost(Protocol):
    """What requests ask of a model's host: the EngineHost of this process, or (distributed mode) a RemoteHost
    that asks a preset's workers over Redis. Raises EngineUnavailable while no engine can answer."""

    max_prompt_tokens: int

    @property
    def state(self) -> EngineState: ...

    @property
    def error(self) -> str | None: ...

    @property
    def info(self) -> EngineInfo | None: ...

    def require(self) -> object:
        """The engine (or, remote, an object with its `info`); raises EngineUnavailable without one."""
        ...

    def names(self) -> tuple[str, str]: ...

    def fingerprint(self) -> str: ...

    def prompt_ids(self, prompt: str) -> list[int]: ...

    def check_tokens(self, texts: list[str], field: str = "target_tokens") -> None: ...

    def tokenize(
        self, prompt: str, top_k: int, wait_s: float, targets: Sequence[str] = ()
    ) -> tuple[TokenizeResult, bool]: ...

    def intervene(self, req: InterventionRequest, wait_s: float) -> InterventionResult: ...

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor: ...


class EngineUnavailable(Exception):
    """The engine is not loaded (still loading, failed, or the server runs without one)."""

    def __init__(self, state: EngineState, message: str) -> None:
        super().__init__(message)
        self.state = state


class PromptTooLong(Exception):
    def __init__(self, n_tokens: int, limit: int) -> None:
        super().__init__(f"prompt: {n_tokens} tokens, more than the limit of {limit}")
        self.n_tokens = n_tokens
        self.limit = limit


class InvalidTarget(ValueError):
    """A token string the model's tokenizer does not read as one token; `field[index]` of the request."""

    def __init__(self, field: str, index: int, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


class EngineBusy(Exception):
    """The worker held the model for longer than the request was willing to wait."""


class EngineHost:
    def __init__(self, factory: EngineFactory | None, max_prompt_tokens: int) -> None:
        self._factory = factory
        self.max_prompt_tokens = max_prompt_tokens
        self.state: EngineState = "none" if factory is None else "loading"
        self.error: str | None = None
        self._engine: EngineAPI | None = None
        self.model_lock = threading.Lock()
        # Tokenizing for the cache key must not wait for a running job; the tokenizer is not the model.
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- state
    def load(self) -> None:
        """Load the engine (called once, from the worker thread)."""
        if self._factory is None:
            return
        try:
            engine = self._factory()
        except Exception as e:  # noqa: BLE001 - any load failure becomes the visible "failed" state
            log.error("engine failed to load:\n%s", traceback.format_exc())
            self.error = f"{type(e).__name__}: {e}"
            self.state = "failed"
        else:
            self._engine = engine
            self.state = "ready"

    def require(self) -> EngineAPI:
        if self.state == "ready" and self._engine is not None:
            return self._engine
        if self.state == "loading":
            raise EngineUnavailable("loading", "engine: the model is still loading; try again shortly")
        if self.state == "failed":
            raise EngineUnavailable("failed", f"engine: the model failed to load ({self.error})")
        raise EngineUnavailable("none", "engine: no model is loaded (the server was started with --no-engine)")

    @property
    def info(self) -> EngineInfo | None:
        """The engine's EngineInfo, or None before it is ready."""
        return self._engine.info if self.state == "ready" and self._engine is not None else None

    def names(self) -> tuple[str, str]:
        info = self.require().info
        return str(info.model_name), str(info.transcoder_name)

    def fingerprint(self) -> str:
        """Identity of the exact weight and transcoder files: part of every cache key, never shown."""
        return str(self.require().info.fingerprint)

    # ------------------------------------------------------------------------------------------- calls
    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids, from the tokenizer alone (so a request never waits for a running job);
        raises PromptTooLong past the limit. The one prompt-length check of graphs and interventions."""
        ids = self.token_ids(prompt)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(len(ids), self.max_prompt_tokens)
        return ids

    def token_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids, from the tokenizer alone, whatever their number."""
        engine = self.require()
        with self._tokenizer_lock:
            return [int(t) for t in engine.encode(prompt).tolist()]

    def check_tokens(self, texts: list[str], field: str = "target_tokens") -> None:
        """Raises InvalidTarget for a string of `field` the tokenizer does not encode as exactly one token
        (tokenizer only: never waits for a running job)."""
        engine = self.require()
        with self._tokenizer_lock:
            for i, text in enumerate(texts):
                try:
                    engine.single_token(text, f"{field}.{i}")
                except ValueError as e:
                    raise InvalidTarget(field, i, str(e)) from None

    def tokenize(
        self, prompt: str, top_k: int, wait_s: float, targets: Sequence[str] = ()
    ) -> tuple[TokenizeResult, bool]:
        """(TokenizeResult, busy). The next-token preview (top tokens, the targets' probabilities) needs the
        model; when the worker holds it for longer than `wait_s`, the tokens and how the targets read come
        back without it and `busy` is True."""
        engine = self.require()
        wants_model = top_k > 0 or bool(targets)
        if wants_model and self.model_lock.acquire(timeout=wait_s):
            try:
                return engine.tokenize(prompt, top_k=top_k, targets=targets), False
            finally:
                self.model_lock.release()
        ids = self.token_ids(prompt)
        with self._tokenizer_lock:
            tokens = [TokenInfo(id=t, text=engine.decode_token(t)) for t in ids]
            read = [engine.target_token(text) for text in targets]
        return TokenizeResult(tokens=tokens, top_next=[], targets=read), wants_model

    def intervene(self, req: InterventionRequest, wait_s: float) -> InterventionResult:
        engine = self.require()
        if not self.model_lock.acquire(timeout=wait_s):
            raise EngineBusy("engine: busy computing a graph; try again when the job has finished")
        try:
            return engine.intervene(req)
        finally:
            self.model_lock.release()

    def attribute(
        self,
        prompt: str,
        params: AttributionParams,
        progress: Callable[[ProgressEvent], None],
        should_cancel: Callable[[], bool],
    ) -> dict[str, Any]:
        engine = self.require()
        with self.model_lock:
            return engine.attribute(prompt, params, progress=progress, should_cancel=should_cancel)

    def validate(
        self, graph: dict[str, Any], req: ValidateRequest, progress: Callable[[ProgressEvent], None]
    ) -> ValidationResult:
        """A validation job, on the worker: it holds the model as a trace does."""
        engine = self.require()
        with self.model_lock:
            return engine.validate(graph, req, progress=progress)

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor:
        """Decoder rows: no forward pass (no hooks), so never waits for the model lock."""
        return self.require().feature_directions(features)
