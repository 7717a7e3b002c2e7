"""`Engine`: one loaded model + transcoder set, and the three things the service asks of it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from circuitboard.engine.adapters import Adapter, get_adapter
from circuitboard.engine.attribution import (
    attribute,
    difference_target,
    feature_targets,
    salient_targets,
    token_targets,
)
from circuitboard.engine.export import graph_to_json
from circuitboard.engine.file_tokenizer import PendingTokenizer
from circuitboard.engine.graph import Graph, compute_graph_scores, prune_graph
from circuitboard.engine.interventions import run_intervention
from circuitboard.engine.linkgraph import LinkGraph
from circuitboard.engine.loading import bos_token_id, default_device, load_model
from circuitboard.engine.native import load_native
from circuitboard.engine.supernodes import decoder_directions
from circuitboard.engine.transcoders import TranscoderSet, load_transcoder_set
from circuitboard.engine.types import (
    AttributionParams,
    EngineInfo,
    InterventionRequest,
    InterventionResult,
    ProgressEvent,
    TargetToken,
    TokenInfo,
    TokenizeResult,
    TokenProb,
)
from circuitboard.engine.validation import ValidateRequest, ValidationResult, validate
from circuitboard.precision import resolve_dtype


def files_fingerprint(paths: list[str | Path], extra: str = "") -> str:
    """A cheap identity of local weight files: resolved path, size and mtime of every file (no hashing of GBs)."""
    h = hashlib.sha256(extra.encode())
    for root in paths:
        root = Path(root)
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
        if not root.exists():
            h.update(str(root).encode())  # a hub id
    return h.hexdigest()[:16]


class PromptError(ValueError):
    """A prompt or target the engine cannot use; the message names the field."""


class Engine:
    def __init__(
        self,
        model,
        tokenizer,
        tset: TranscoderSet,
        *,
        model_name: str,
        fingerprint: str = "",
        load_runnable: Callable[[], Any] | None = None,
    ):
        """`model` is a transformers model, or the weights alone (`engine.native`) with `load_runnable` giving
        the transformers model the first time a call must run the model itself (generation, interventions)."""
        self.model, self.tokenizer, self.tset = model, tokenizer, tset
        self.adapter = get_adapter(model)
        self._load_runnable = load_runnable
        if tset.n_layers != self.adapter.n_layers or tset.d_model != self.adapter.d_model:
            raise ValueError(
                f"transcoders ({tset.n_layers} layers, d_model {tset.d_model}) do not fit the model "
                f"({self.adapter.n_layers} layers, d_model {self.adapter.d_model})"
            )
        self.model_name = model_name
        self.fingerprint = fingerprint
        # One model, one computation at a time: attribution, tokenize previews and interventions share it.

    @classmethod
    def load(
        cls,
        model: str | Path,
        transcoders: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        warm_up: bool = True,
        trace_only: bool = False,
        tokenizer: PendingTokenizer | None = None,
    ) -> Engine:
        """`warm_up=False` for one-shot processes, whose first trace warms the model anyway (load_model).
        `trace_only=True` reads a plain model folder without transformers (engine.native: seconds less start-up
        for `circuitboard trace`); the model itself is loaded later only if a call needs it. `tokenizer`: the
        folder's tokenizer already loading in a helper process (file_tokenizer.start_tokenizer)."""
        device = torch.device(device) if device is not None else default_device()
        tset = load_transcoder_set(transcoders, device=device, dtype=resolve_dtype(dtype))
        fingerprint = files_fingerprint([model, transcoders], extra=dtype)

        def runnable() -> Any:
            return load_model(model, device=device, dtype=dtype, warm_up=warm_up)

        native = None
        if trace_only:
            native = load_native(model, device=device, dtype=resolve_dtype(dtype), tokenizer=tokenizer)
        elif tokenizer is not None:
            tokenizer.cancel()
        if native is not None:
            weights, tokenizer, name = native
            return cls(
                weights, tokenizer, tset, model_name=name, fingerprint=fingerprint, load_runnable=lambda: runnable()[0]
            )
        hf_model, tokenizer, name = runnable()
        return cls(hf_model, tokenizer, tset, model_name=name, fingerprint=fingerprint)

    def _runnable(self) -> Adapter:
        """The adapter of a model that runs its own forward: loads the transformers model on first need when this
        engine was loaded from the weights alone (and drops those weights: the model holds the same)."""
        if self._load_runnable is not None:
            self.model = self._load_runnable()
            self.adapter = get_adapter(self.model)
            self._load_runnable = None
        return self.adapter

    @property
    def info(self) -> EngineInfo:
        p = self.adapter.W_U
        return EngineInfo(
            model_name=self.model_name,
            transcoder_name=self.tset.name,
            architecture=self.adapter.architecture,
            n_layers=self.adapter.n_layers,
            d_model=self.adapter.d_model,
            d_transcoder=self.tset.d_transcoder,
            vocab_size=self.adapter.vocab_size,
            cross_layer=self.tset.cross_layer,
            device=p.device.type,
            dtype=str(p.dtype).removeprefix("torch."),
            fingerprint=self.fingerprint,
        )

    # -------------------------------------------------------------------------------------- tokens

    def encode(self, prompt: str) -> torch.Tensor:
        """Token ids with a leading special token: position 0 carries no feature nodes (as circuit-tracer)."""
        if not prompt:
            raise PromptError("prompt: must not be empty")
        ids = self.tokenizer(prompt, add_special_tokens=True).input_ids
        special = set(self.tokenizer.all_special_ids)
        if not ids or ids[0] not in special:
            bos = bos_token_id(self.tokenizer)
            if bos is not None:
                ids = [bos, *ids]
        return torch.tensor(ids, dtype=torch.long, device=self.adapter.W_U.device)

    def decode_token(self, token_id: int) -> str:
        if token_id >= self.adapter.vocab_size:
            return f"<custom {token_id - self.adapter.vocab_size}>"
        return self.tokenizer.decode([token_id])

    def text_ids(self, text: str) -> list[int]:
        """Token ids of `text` on its own (no special tokens): how a target or watched token reads."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def single_token(self, text: str, field: str) -> int:
        ids = self.text_ids(text)
        if len(ids) != 1:
            raise PromptError(f"{field}: {text!r} is {len(ids)} tokens; a target must be exactly one token")
        return ids[0]

    @torch.no_grad()
    def tokenize(self, prompt: str, top_k: int = 10, targets: Sequence[str] = ()) -> TokenizeResult:
        """Tokens, the top next tokens and how each of `targets` reads (with its next-token probability)."""
        ids = self.encode(prompt)
        model = self._runnable().model
        probs = model(input_ids=ids[None], use_cache=False, logits_to_keep=1).logits[0, -1].float().softmax(-1)
        p, i = probs.topk(min(top_k, probs.shape[-1]))
        return TokenizeResult(
            tokens=[TokenInfo(id=t, text=self.decode_token(t)) for t in ids.tolist()],
            top_next=[
                TokenProb(id=t, text=self.decode_token(t), prob=q) for q, t in zip(p.tolist(), i.tolist(), strict=True)
            ],
            targets=[self.target_token(text, probs) for text in targets],
        )

    def target_token(self, text: str, probs: torch.Tensor | None = None) -> TargetToken:
        """`text` as a target: its ids, and its probability in `probs` (a next-token distribution) when single."""
        ids = self.text_ids(text)
        single = len(ids) == 1
        prob = float(probs[ids[0]]) if single and probs is not None else None
        return TargetToken(text=text, ids=ids, single=single, prob=prob)

    # -------------------------------------------------------------------------------------- attribution

    def attribute_graph(
        self,
        prompt: str,
        params: AttributionParams,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Graph:
        ids = self.encode(prompt)
        targets_fn = self._targets_fn(params)
        return attribute(
            self.adapter,
            self.tset,
            ids,
            targets_fn=targets_fn,
            input_string=prompt,
            decode=self.decode_token,
            max_feature_nodes=params.max_feature_nodes,
            batch_size=params.batch_size,
            progress=progress,
            should_cancel=should_cancel,
            precision=params.precision,
        )

    def _targets_fn(self, params: AttributionParams):
        ad, dec = self.adapter, self.decode_token
        if params.target_features:
            feats = [(int(a), int(b), int(c)) for a, b, c in params.target_features]
            return lambda ctx: feature_targets(ad, self.tset, ctx, feats)
        if params.logit_diff:
            a = self.single_token(params.logit_diff[0], "logit_diff.0")
            b = self.single_token(params.logit_diff[1], "logit_diff.1")
            return lambda ctx: difference_target(ad, ctx, a, b, dec)
        if params.target_tokens:
            ids = [self.single_token(t, f"target_tokens.{i}") for i, t in enumerate(params.target_tokens)]
            return lambda ctx: token_targets(ad, ctx, ids, dec)
        return lambda ctx: salient_targets(ad, ctx, params.max_n_logits, params.desired_logit_prob, dec)

    def attribute(
        self,
        prompt: str,
        params: AttributionParams,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict:
        """Trace, prune and export: the graph JSON the store keeps and the page draws."""
        graph = self.attribute_graph(prompt, params, progress, should_cancel)
        return self.export(graph, params, progress)

    def export(
        self, graph: Graph, params: AttributionParams, progress: Callable[[ProgressEvent], None] | None = None
    ) -> dict:
        if progress:
            progress(ProgressEvent(phase="prune", done=0, total=1))
        prune = prune_graph(graph, params.node_threshold, params.edge_threshold)
        replacement, completeness = compute_graph_scores(graph)
        if progress:
            progress(ProgressEvent(phase="export", done=0, total=1))
        info = {
            "model": self.model_name,
            "transcoders": self.tset.name,
            "architecture": self.adapter.architecture,
            "n_layers": graph.n_layers,
            "vocab_size": graph.vocab_size,
            "params": params.model_dump(exclude={"slug"}),
            "replacement_score": replacement,
            "completeness_score": completeness,
            "n_selected_features": graph.n_features,
            "input_token_ids": graph.input_tokens.tolist(),
            "device": self.info.device,
        }
        return graph_to_json(
            graph,
            prune,
            slug=params.slug or "graph",
            scan=self.tset.name,
            node_threshold=params.node_threshold,
            info=info,
        )

    # -------------------------------------------------------------------------------------- interventions

    def intervene(self, req: InterventionRequest) -> InterventionResult:
        ids = self.encode(req.prompt)
        watch_ids = [self.single_token(text, f"watch.{i}") for i, text in enumerate(req.watch)]
        return run_intervention(self._runnable(), self.tset, self.tokenizer, ids, req, watch_ids)

    # -------------------------------------------------------------------------------------- analysis

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor:
        """Decoder directions [n, d] of (layer, index) features, for suggested supernodes (no forward pass)."""
        return decoder_directions(self.tset, features)

    def validate(
        self, graph: dict[str, Any], req: ValidateRequest, progress: Callable[[ProgressEvent], None] | None = None
    ) -> ValidationResult:
        """Predicted against measured effects of a stored graph's supernodes; the graph must be this engine's.
        `progress` hears of every forward pass (see validation.validate)."""
        linked = LinkGraph.from_json(graph)
        ids = self.encode(linked.prompt)
        traced = linked.info.get("input_token_ids")
        if (list(traced) != ids.tolist()) if traced is not None else len(linked.prompt_tokens) != len(ids):
            raise PromptError("graph: its prompt does not tokenise to the tokens it was traced on")
        return validate(self._runnable(), self.tset, ids, linked, req, progress)
