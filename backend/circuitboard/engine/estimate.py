"""How long a trace will take and how much memory it will hold at its peak, predicted before it runs (issue 16).

The server refuses a trace that would not fit its limits (`Settings.max_trace_seconds`, `max_trace_bytes`), and
the page shows the estimate next to the trace button. The model has a few named terms, each a count of work or
of bytes that follows from the prompt's length, the attribution parameters and the model's and transcoders'
dimensions (see `attribution.py` for what each stage does):

- `forward`: the engine's forward pass (attention patterns formed in it), the transcoders' encode and decode;
- `rows`: the batched backward rows, rows x layers x positions x (edge reads + attention value path + skip);
- `writes`: writing every row into its buffer (memory bound: rows x columns);
- `influence`: the greedy selection's power iterations over the rows computed so far (refreshes x rows x width);
- `prune`: influence and pruning on the final adjacency (its held rows x N x iterations);
- `steps`, `layer_steps`: per-operation overhead that does not scale with size (Python and kernel dispatch, per
  batch step and per layer of the forward).

Time is each term's flop count over this process's measured matmul rate (`precision`'s timing) times a constant
fitted by `bench/estimate.py` on this machine, plus the overhead counts times seconds that scale with a measured
mid-sized op. Memory is the resident model and transcoders, plus the largest of three phases (rows, assembling,
pruning) times a fitted factor. Two layouts are modelled: `dense` (the engine before issue 16: rows span every
active feature's column, an N x N adjacency) and `streamed` (the row store keeps the columns a batch can reach;
the graph keeps only its feature and logit rows), so one model serves either engine.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field

from circuitboard import precision
from circuitboard.engine.rowstore import RowStore
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.engine.types import AttributionParams, EngineInfo

Adjacency = Literal["dense", "streamed"]
# Active features per token and layer assumed for a ReLU / JumpReLU set that records no L0 (metrics.json):
# circuit-tracer-style JumpReLU sets sit at 75-110 on the peer bench's prompts (bench/README.md).
DEFAULT_L0 = 100.0
# The writer tables' size against their contents (sources.Writers pads rounds of the mean count per position;
# the last, partial round of the busiest positions is the padding). TopK, with k at every position, has none.
PEAK_L0_RATIO = 1.25
FLOP_TERMS = ("forward", "rows", "writes", "influence", "prune")  # the others are counts of overhead steps
UPDATE_INTERVAL = 4  # attribution.attribute's default: the greedy order is refreshed every 4 batches


class TraceDims(BaseModel):
    """What a trace's cost depends on besides the prompt and the parameters: the model's and transcoders' sizes."""

    n_layers: int
    d_model: int
    d_transcoder: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    n_params: int
    model_bytes: int
    transcoder_bytes: int
    element_bytes: int = 4
    skip: bool = False
    cross_layer: bool = False
    l0: float = Field(description="active features per token and layer")
    l0_peak: float = Field(description="writer slots per position and layer, padding included")

    @classmethod
    def from_info(cls, info: EngineInfo, l0: float = DEFAULT_L0) -> TraceDims:
        """Dimensions from EngineInfo alone (an engine that exposes nothing more): 64-wide heads, a model of
        12 d² per layer plus its embedding, the transcoders' encoder and decoder held in memory."""
        es = 2 if info.dtype in ("bfloat16", "float16") else 4
        n_heads = max(1, info.d_model // 64)
        n_params = 12 * info.n_layers * info.d_model**2 + info.vocab_size * info.d_model
        t_params = 2 * info.n_layers * info.d_transcoder * info.d_model
        return cls(
            n_layers=info.n_layers,
            d_model=info.d_model,
            d_transcoder=info.d_transcoder,
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=64,
            vocab_size=info.vocab_size,
            n_params=n_params,
            model_bytes=n_params * es,
            transcoder_bytes=t_params * es,
            element_bytes=es,
            cross_layer=info.cross_layer,
            l0=min(l0, info.d_transcoder),
            l0_peak=min(l0 * PEAK_L0_RATIO, info.d_transcoder),
        )


class Calibration(BaseModel):
    """Constants fitted by bench/estimate.py: dimensionless factors on flops / rate, seconds, bytes."""

    measured: str = Field(description="when and where, and on which engine revision")
    gflops: float = Field(description="the matmul rate this process measured while calibrating")
    adjacency: Adjacency = Field(description="the row-buffer layout of the engine that was measured")
    forward: float
    rows: float
    writes: float
    influence: float
    prune: float
    probe_s: float = Field(description="the mid-sized op's time (`machine_probe_seconds`) while calibrating")
    step_s: float = Field(description="seconds per batch step (one layer or one position of one batch)")
    layer_step_s: float = Field(description="seconds per layer of the forward pass and the context, beyond flops")
    fixed_s: float = Field(description="seconds per trace that do not grow with anything")
    base_bytes: int = Field(description="the process without model or transcoders (Python, torch, tokenizer)")
    transient: float = Field(description="measured over modelled bytes of the largest phase (allocator slack)")


# As printed by `bench/estimate.py` (bench/README.md, "Trace estimates"): refit when the engine changes.
CALIBRATION = Calibration(
    measured="2026-12-02, 2-core AMD EPYC shared by six sessions (load 7-10), engine with the row store and "
    "rounds of writers; tiny 8-1,024 and Gemma 3 270M 10-32 tokens",
    gflops=27.77,
    adjacency="streamed",
    forward=0.0,  # at these lengths the forward is all per-layer overhead (layer_step_s)
    rows=1.135,
    writes=7260.0,
    influence=0.0,
    prune=112.6,
    probe_s=9.304e-4,
    step_s=0.0,
    layer_step_s=0.05558,
    fixed_s=0.0,
    base_bytes=669_613_831,
    transient=1.471,
)


class TraceLimits(BaseModel):
    seconds: float
    bytes: int


class TraceEstimate(BaseModel):
    tokens: int
    seconds: float
    peak_bytes: int
    gflops: float = Field(description="the matmul rate the time was scaled by")
    adjacency: Adjacency
    seconds_by_term: dict[str, float]
    bytes_by_term: dict[str, int]

    def refusal(self, limits: TraceLimits) -> str | None:
        """Why the trace does not fit `limits` (a message naming `prompt`), or None when it does."""
        if self.seconds <= limits.seconds and self.peak_bytes <= limits.bytes:
            return None
        return (
            f"prompt: {self.tokens:,} tokens would take ~{_duration(self.seconds)} and ~{_size(self.peak_bytes)}; "
            f"this server allows {_duration(limits.seconds)} and {_size(limits.bytes)}; "
            "shorten the prompt or lower max_feature_nodes"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0.1):.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ------------------------------------------------------------------------------------------- the shape


class TraceShape(BaseModel):
    """Counts of one trace: tokens, features, rows and columns (as attribution.attribute lays them out)."""

    tokens: int
    n_active: int
    n_selected: int
    n_logits: int
    n_cols: int  # a computed row: [active features | errors | tokens]
    stored: float  # entries kept per feature row while the selection runs
    n_nodes: int  # N: [selected | errors | tokens | logits]
    graph_rows: int  # rows of the final adjacency that are held (dense: N; streamed: features and logits)
    every_feature: bool  # the budget covers every active feature: nothing to rank, batches sorted by layer
    batch: int  # rows per backward batch
    chunk: int  # features chosen per refresh of the greedy order (all of them when every feature is selected)
    reach: float  # the share of the layers a row runs through (and of the lower layers' feature columns)
    writers: float  # writer vectors per position, summed over layers (zero-padded tables)


def trace_shape(tokens: int, params: AttributionParams, dims: TraceDims, adjacency: Adjacency) -> TraceShape:
    L, P = dims.n_layers, max(tokens, 1)
    n_active = int(round(dims.l0 * L * (P - 1)))  # position 0 (BOS) carries no features
    n_selected = min(params.max_feature_nodes, n_active)
    n_logits = _n_targets(params)
    n_cols = n_active + L * P + P
    every = n_selected == n_active
    # attribute(): backward batches of at most ~128 MB of rows; the greedy order's refreshes of 4 batches each.
    compute = max(params.batch_size, min(1024, int(128e6 // (4 * max(n_cols, 1)))))
    chunk = n_active if every else UPDATE_INTERVAL * params.batch_size
    batch = min(compute, max(chunk, 1))
    # Each row runs only through the layers below its own (the row loop works on the prefix of rows that carry a
    # gradient), on average half of them. The row store keeps each run of rows (one layer, one band of positions)
    # over the feature columns of the lower layers up to the band's end: half the layers, and half the positions
    # plus half a band.
    reach = 0.5
    band = min(P, max(-(-P // RowStore.POSITION_BANDS), RowStore.MIN_BAND))
    position_share = min(1.0, 0.5 + 0.5 * band / P)
    stored = n_cols if adjacency == "dense" or every else reach * position_share * n_active + L * P + P
    n_nodes = n_selected + L * P + P + n_logits
    per_layer = dims.l0_peak * ((L + 1) / 2 if dims.cross_layer else 1.0)  # a CLT layer reads every layer below
    return TraceShape(
        tokens=P,
        n_active=n_active,
        n_selected=n_selected,
        n_logits=n_logits,
        n_cols=n_cols,
        stored=stored,
        n_nodes=n_nodes,
        graph_rows=n_nodes if adjacency == "dense" else n_selected + n_logits,
        every_feature=every,
        batch=batch,
        chunk=chunk,
        reach=reach,
        writers=L * (1 + per_layer),
    )


def _n_targets(params: AttributionParams) -> int:
    if params.target_features:
        return len(params.target_features)
    if params.logit_diff:
        return 1
    if params.target_tokens:
        return len(params.target_tokens)
    return params.max_n_logits  # an upper bound: the cumulative-probability cut may keep fewer


# ------------------------------------------------------------------------------------------- time


def work_terms(shape: TraceShape, dims: TraceDims) -> dict[str, float]:
    """Flop counts (or element counts, for memory-bound terms) of each named term, and `steps` (a count)."""
    L, P, d = dims.n_layers, shape.tokens, dims.d_model
    q, kv = dims.n_heads * dims.head_dim, dims.n_kv_heads * dims.head_dim
    out_layers = (L + 1) / 2 if dims.cross_layer else 1.0
    forward = P * (
        2 * dims.n_params  # the engine's own forward, which forms the attention patterns as it goes
        + 4 * L * P * q  # attention scores and values
        + 2 * L * d * dims.d_transcoder  # encode
        + 2 * L * dims.l0 * d * out_layers  # decode
        + (2 * L * d * d if dims.skip else 0)
    )

    def per_row(layers: float, pos: float) -> float:  # one row through `layers` layers at `pos` positions
        edges = shape.writers / L
        return layers * pos * (2 * d * (edges + q + kv + (d if dims.skip else 0)) + 2 * q * pos) + 2 * pos * d

    if shape.every_feature:  # batches sorted by (layer, position): on average half the layers and positions
        feature_rows = shape.n_selected * per_row((L + 1) / 2, min(P, P / 2 + shape.batch / (2 * dims.l0)))
    else:  # each greedy batch spans the prompt's positions; each row the layers below its own
        feature_rows = shape.n_selected * per_row(L * shape.reach, P)
    n_rows = shape.n_selected + shape.n_logits
    refresh = shape.chunk
    refreshes = 0 if shape.every_feature else shape.n_selected // refresh
    done = refresh * refreshes * (refreshes + 1) / 2  # rows held, summed over the refreshes
    if shape.stored == shape.n_cols:  # dense: every power-iteration step reads every row in full
        influence = (L + 1) * shape.stored * done
    else:  # streamed: the steps run on the selected square; one pass over the stored rows
        influence = shape.stored * done + (L + 1) * refresh * refreshes * done
    n_batches = math.ceil(shape.n_selected / shape.batch) + 1
    return {
        "forward": forward,
        "rows": shape.n_logits * per_row(L, P) + feature_rows,
        "writes": n_rows * shape.n_cols,
        "influence": influence,
        "prune": shape.graph_rows * shape.n_nodes * (2 * (L + 2) + 12),
        "steps": n_batches * (L + P) + refreshes * (L + 1),
        "layer_steps": L,  # the forward's and the context's per-layer work (a few dozen ops each)
    }


def _seconds(work: dict[str, float], calib: Calibration, gflops: float, probe_s: float) -> dict[str, float]:
    """Seconds per term at `gflops`; the overheads scale with the measured time of one mid-sized op (`probe_s`)
    against the calibration's: on an oversubscribed CPU two torch threads wait on each other at every op."""
    rate, slowdown = gflops * 1e9, probe_s / calib.probe_s
    out = {name: getattr(calib, name) * work[name] / rate for name in FLOP_TERMS}
    out["steps"] = calib.step_s * work["steps"] * slowdown
    out["layer_steps"] = calib.layer_step_s * work["layer_steps"] * slowdown
    out["fixed"] = calib.fixed_s * slowdown
    return out


# ------------------------------------------------------------------------------------------- memory


def byte_terms(shape: TraceShape, dims: TraceDims) -> dict[str, int]:
    """Bytes of what a trace holds: resident weights, the prompt's context, the sources, the phases."""
    es, L, P, d = dims.element_bytes, dims.n_layers, shape.tokens, dims.d_model
    context = es * (L * P * dims.d_transcoder + L * dims.n_heads * P * P + 10 * L * P * d + dims.vocab_size)
    out_layers = (L + 1) / 2 if dims.cross_layer else 1.0
    # The padded writer tables, and the decoder rows they are built from: one layer's at a time for a PLT, every
    # layer's for a CLT (each source layer's rows serve every layer above it).
    building = shape.n_active * d * (out_layers if dims.cross_layer else 1 / L)
    sources = es * (shape.writers * P * d + building)
    batch = es * shape.batch * (shape.n_cols + 6 * P * d + P * shape.writers / L)
    graph = 4.0 * shape.graph_rows * shape.n_nodes  # always float32
    if shape.every_feature:  # the rows are written into the graph's rows themselves
        row_buffer, assemble = graph, context + sources + graph
    else:
        row_buffer = es * shape.n_selected * shape.stored
        assemble = context + sources + row_buffer + graph
    # Pruning holds the rows, |rows| normalised, the pruned copy and its scores: 5 copies dense, 4 streamed
    # (where each is dropped as soon as the next is made).
    copies = 5 if shape.graph_rows == shape.n_nodes else 4
    return {
        "model": dims.model_bytes,
        "transcoders": dims.transcoder_bytes,
        "rows_phase": int(context + sources + row_buffer + batch),
        "assemble_phase": int(assemble),
        "prune_phase": int(graph * copies),
    }


def _peak(terms: dict[str, int], calib: Calibration) -> int:
    phase = max(terms["rows_phase"], terms["assemble_phase"], terms["prune_phase"])
    return int(calib.base_bytes + terms["model"] + terms["transcoders"] + calib.transient * phase)


# ------------------------------------------------------------------------------------------- estimate


@functools.cache
def machine_gflops(dtype: torch.dtype = torch.float32) -> float:
    """This process's matmul rate, from the timing `precision` makes to choose the compute dtype."""
    return precision.matmul_gflops(dtype)


@functools.cache
def machine_probe_seconds() -> float:
    """Seconds of one mid-sized op ([64, 256] @ [256, 256], then ReLU) with this process's torch threads: what
    the per-step overheads scale with."""
    a, b = torch.randn(64, 256), torch.randn(256, 256)
    (a @ b).relu_()

    def once() -> float:
        t = time.perf_counter()
        for _ in range(50):
            (a @ b).relu_()
        return (time.perf_counter() - t) / 50

    return min(once() for _ in range(3))


def estimate_trace(
    tokens: int,
    params: AttributionParams,
    dims: TraceDims,
    calib: Calibration = CALIBRATION,
    gflops: float | None = None,
    probe_s: float | None = None,
) -> TraceEstimate:
    """Predicted seconds and peak bytes of tracing a `tokens`-token prompt with `params` (export included), at
    this process's measured rates unless `gflops` and `probe_s` are given."""
    rate = machine_gflops() if gflops is None else gflops
    probe = machine_probe_seconds() if probe_s is None else probe_s
    shape = trace_shape(tokens, params, dims, calib.adjacency)
    seconds = _seconds(work_terms(shape, dims), calib, rate, probe)
    sizes = byte_terms(shape, dims)
    return TraceEstimate(
        tokens=shape.tokens,
        seconds=sum(seconds.values()),
        peak_bytes=_peak(sizes, calib),
        gflops=rate,
        adjacency=calib.adjacency,
        seconds_by_term=seconds,
        bytes_by_term=sizes,
    )


# ------------------------------------------------------------------------------------------- engines


def engine_dims(engine: object) -> TraceDims:
    """The dimensions of a loaded Engine (measured from its weights), or of anything with an `info` (an
    EngineInfo: approximated from it). Cached per Engine: the weights never change under a loaded engine."""
    if isinstance(engine, Engine):
        return _dims_of_engine(engine)
    info = getattr(engine, "info", None)
    if not isinstance(info, EngineInfo):
        raise TypeError(f"cannot size {type(engine).__name__}: it has no EngineInfo")
    return TraceDims.from_info(info)


@functools.lru_cache(maxsize=4)
def _dims_of_engine(engine: Engine) -> TraceDims:
    info, attn, tset = engine.info, engine.adapter.blocks[0].attn, engine.tset
    n_params = sum(p.numel() for p in engine.model.parameters())
    model_bytes = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    t_bytes = sum(_layer_bytes(tset, layer) for layer in range(tset.n_layers))
    l0 = set_l0(tset.layers[0].activation.kind, tset.layers[0].activation.k, tset.path)
    return TraceDims(
        n_layers=info.n_layers,
        d_model=info.d_model,
        d_transcoder=info.d_transcoder,
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads,
        head_dim=attn.head_dim,
        vocab_size=info.vocab_size,
        n_params=n_params,
        model_bytes=model_bytes,
        transcoder_bytes=t_bytes,
        element_bytes=engine.adapter.W_U.element_size(),
        skip=tset.has_skip,
        cross_layer=tset.cross_layer,
        l0=min(l0, info.d_transcoder),
        l0_peak=min(l0 if tset.layers[0].activation.kind == "topk" else l0 * PEAK_L0_RATIO, info.d_transcoder),
    )


def _layer_bytes(tset: TranscoderSet, layer: int) -> int:
    """One layer's weights, its decoder counted in full even while it is read lazily: the pages a trace touches
    stay resident (memory-mapped), and over a few traces that is most of them."""
    lw, es = tset.layers[layer], tset.layers[layer].W_enc.element_size()
    held = sum(t.numel() * t.element_size() for t in (lw.W_enc, lw.b_enc, lw.b_dec, lw.W_skip) if t is not None)
    decoder = (
        lw.W_dec.numel() if lw.W_dec is not None else tset.d_transcoder * tset.d_model * len(tset.output_layers(layer))
    )
    return held + es * decoder


def set_l0(kind: str, k: int | None, path: str | None) -> float:
    """Active features per token and layer: TopK's k; else the mean L0 the trainer recorded in the set's
    metrics.json; else DEFAULT_L0."""
    if kind == "topk" and k:
        return float(k)
    if path:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        try:
            layers = json.loads((folder / "metrics.json").read_text())["layers"]
            values = [float(m["l0"]) for m in layers.values() if "l0" in m]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            values = []
        if values:
            return sum(values) / len(values)
    return DEFAULT_L0
