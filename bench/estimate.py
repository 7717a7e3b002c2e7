"""Calibrate and check the trace estimator (circuitboard.engine.estimate) on this machine.

    .venv/bin/python bench/estimate.py                           # tiny model + the default preset, a few lengths
    .venv/bin/python bench/estimate.py --models tiny --lengths 8,32,128,256
    .venv/bin/python bench/estimate.py --gemma-lengths 16,64,160 --out .bench/estimate.json

Each model runs in its own process (so its peak RSS is its own), lengths in ascending order, 2 torch threads
(the server's). Per trace it records the engine's phase timings (forward, logit rows, feature rows), the
export (pruning and JSON) and the peak RSS during the trace (sampled every 10 ms). The parent then fits the
estimator's constants (non-negative least squares on relative error, one phase at a time), prints predicted
vs measured seconds and peak bytes with their ratio under both the module's constants and the fitted ones,
and prints the fitted `Calibration(...)` to paste into estimate.py (with the date, the machine and the rate).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from circuitboard.engine.estimate import (
    CALIBRATION,
    FLOP_TERMS,
    Calibration,
    TraceDims,
    byte_terms,
    engine_dims,
    estimate_trace,
    machine_gflops,
    machine_probe_seconds,
    trace_shape,
    work_terms,
)
from circuitboard.engine.types import AttributionParams

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "models" / "gemma-3-270m"
TEXT = (
    "The capital of the state containing Dallas is Austin, and the river that runs through it is the Colorado. "
    "Rabbits eat carrots in the garden while the farmer sleeps under the old oak tree near the barn. "
    "In 1969 two astronauts walked on the Moon, and millions of people watched the pictures on television. "
    "A prime number has exactly two divisors, so seven is prime and nine is not, because three divides it. "
)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The largest resident set size seen while the block runs (a thread samples /proc every 10 ms)."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _engine(model: str):
    from circuitboard.devtools.tiny import build_tiny_model
    from circuitboard.engine import patterns
    from circuitboard.engine.session import Engine
    from circuitboard.engine.transcoders import random_transcoder_set

    if model == "gemma":
        return Engine.load(PRESET / "model", PRESET / "transcoders", device="cpu")
    hf, tok = build_tiny_model("llama", seed=0, n_layers=4, d_model=128)
    patterns.use_pattern_attention(hf)
    tset = random_transcoder_set(4, 128, 512, kind="topk", k=16, skip=True, seed=0)
    return Engine(hf, tok, tset, model_name="tiny-llama")


def _prompt(engine, n_tokens: int) -> str:
    """A prompt of about `n_tokens` tokens (special token included), cut from TEXT repeated."""
    ids = engine.encode(TEXT * (1 + n_tokens // 40)).tolist()
    return engine.tokenizer.decode(ids[1:n_tokens], skip_special_tokens=True)


def child(model: str, lengths: list[int], nodes: int, adjacency: str) -> None:
    """Trace `model` at each length; one JSON line per trace on stdout."""
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    engine = _engine(model)
    load_s, resident = time.perf_counter() - t0, _rss()
    params = AttributionParams(max_feature_nodes=nodes)
    dims = engine_dims(engine)
    engine.attribute(_prompt(engine, 4), params)  # warm-up: first-call allocations and kernel selection
    for n in lengths:
        prompt = _prompt(engine, n)
        # Now, not once per process (the load on this machine varies), and again after the trace: the mean.
        gflops, probe_s = machine_gflops.__wrapped__(), machine_probe_seconds.__wrapped__()
        with PeakRSS() as rss:
            t1 = time.perf_counter()
            graph = engine.attribute_graph(prompt, params)
            t2 = time.perf_counter()
            engine.export(graph, params)
            t3 = time.perf_counter()
        timings = graph.info["timings"]
        gflops = (gflops + machine_gflops.__wrapped__()) / 2
        probe_s = (probe_s + machine_probe_seconds.__wrapped__()) / 2
        row = {
            "model": model,
            "tokens": int(graph.input_tokens.shape[0]),
            "nodes": nodes,
            "n_active": int(graph.info["n_active_features"]),
            "forward_s": timings["forward_s"],
            "rows_s": timings["logits_s"] + timings["features_s"],
            "export_s": (t2 - t1 - timings["total_s"]) + (t3 - t2),
            "seconds": t3 - t1,
            "peak_bytes": rss.peak,
            "resident_bytes": resident,
            "load_s": load_s,
            "gflops": gflops,
            "probe_s": probe_s,
            "dims": dims.model_dump(),
            "adjacency": adjacency,
        }
        print(json.dumps(row), flush=True)
        del graph


def run_children(models: list[str], lengths: dict[str, list[int]], nodes: int, adjacency: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in models:
        cmd = [sys.executable, __file__, "--child", model, "--lengths", ",".join(map(str, lengths[model]))]
        cmd += ["--nodes", str(nodes), "--adjacency", adjacency]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
        rows += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return rows


# ------------------------------------------------------------------------------------------- fitting


def _terms(row: dict[str, Any]):
    dims = TraceDims.model_validate(row["dims"])
    shape = trace_shape(row["tokens"], AttributionParams(max_feature_nodes=row["nodes"]), dims, row["adjacency"])
    return work_terms(shape, dims), byte_terms(shape, dims)


def _fit(rows: list[dict[str, Any]], target: str, names: list[str], with_fixed: bool, ref: float) -> dict[str, float]:
    """Non-negative constants c with target ≈ Σ c · work / rate (+ fixed), minimising relative error; the
    overheads (steps, fixed) are seconds at the reference probe time `ref` (seconds of estimate's mid-sized op)."""
    a, b = [], []
    per_model = {m: sum(r["model"] == m for r in rows) for m in {r["model"] for r in rows}}
    for row in rows:
        weight = per_model[row["model"]] ** -0.5  # each model weighs the same, however many lengths it ran
        work, _ = _terms(row)
        rate = row["gflops"] * 1e9
        slow = row["probe_s"] / ref
        cols = [work[n] / rate if n in FLOP_TERMS else work[n] * slow for n in names] + ([slow] if with_fixed else [])
        a.append(weight * np.array(cols) / row[target])
        b.append(weight)
    coef, _ = nnls(np.array(a), np.array(b))
    return dict(zip([*names, *(["fixed_s"] if with_fixed else [])], coef.tolist(), strict=True))


def _fit_bytes(rows: list[dict[str, Any]]) -> tuple[int, float]:
    """(base_bytes, transient): peak − weights ≈ base + transient × the largest phase's modelled bytes, least
    squares in bytes (the large traces, where the limit matters, weigh most); base at least the largest resident
    set seen before a trace (Python, torch, the tokenizer)."""
    a, b, floor = [], [], 0
    for r in rows:
        _, sizes = _terms(r)
        weights = r["dims"]["model_bytes"] + r["dims"]["transcoder_bytes"]
        a.append([1.0, max(sizes["rows_phase"], sizes["assemble_phase"], sizes["prune_phase"])])
        b.append(r["peak_bytes"] - weights)
        floor = max(floor, r["resident_bytes"] - weights)
    (base, transient), _ = nnls(np.array(a), np.array(b, dtype=float))
    base = max(base, floor)
    # Then no trace with a sizeable phase may come out under its measured peak: a limit must not be passed.
    under = [(m - base) / phase for (_, phase), m in zip(a, b, strict=True) if phase >= 256 * 2**20]
    return int(base), float(max([transient, 1.0, *under]))


def fit(rows: list[dict[str, Any]], measured: str):
    ref = float(np.median([r["probe_s"] for r in rows]))
    fwd = _fit(rows, "forward_s", ["forward", "layer_steps"], False, ref)
    body = _fit(rows, "rows_s", ["rows", "writes", "influence", "steps"], False, ref)
    tail = _fit(rows, "export_s", ["prune"], True, ref)
    base, transient = _fit_bytes(rows)
    return Calibration(
        measured=measured,
        gflops=float(np.median([r["gflops"] for r in rows])),
        probe_s=ref,
        adjacency=rows[0]["adjacency"],
        forward=fwd["forward"],
        rows=body["rows"],
        writes=body["writes"],
        influence=body["influence"],
        prune=tail["prune"],
        step_s=body["steps"],
        layer_step_s=fwd["layer_steps"],
        fixed_s=tail["fixed_s"],
        base_bytes=base,
        transient=transient,
    )


def report(rows: list[dict[str, Any]], calibs: dict[str, Any]) -> None:
    head = f"{'model':<6} {'tok':>5} {'active':>8} {'meas s':>8} {'meas GiB':>9}"
    for name in calibs:
        head += f" | {name + ' s':>9} {'ratio':>6} {'GiB':>6} {'ratio':>6}"
    print(head)
    for r in rows:
        line = f"{r['model']:<6} {r['tokens']:>5} {r['n_active']:>8} {r['seconds']:>8.2f}"
        line += f" {r['peak_bytes'] / 2**30:>9.2f}"
        for calib in calibs.values():
            dims = TraceDims.model_validate(r["dims"])
            params = AttributionParams(max_feature_nodes=r["nodes"])
            est = estimate_trace(r["tokens"], params, dims, calib, r["gflops"], r["probe_s"])
            line += f" | {est.seconds:>9.2f} {est.seconds / r['seconds']:>6.2f}"
            line += f" {est.peak_bytes / 2**30:>6.2f} {est.peak_bytes / r['peak_bytes']:>6.2f}"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,gemma")
    ap.add_argument("--tiny-lengths", default="8,32,128,384")
    ap.add_argument("--gemma-lengths", default="10,32,96,160")
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument(
        "--adjacency",
        choices=["dense", "streamed"],
        default=CALIBRATION.adjacency,
        help="the row layout of the engine in the tree (dense: before issue 16's row store)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "estimate.json")
    ap.add_argument("--report", action="store_true", help="refit and reprint from --out without tracing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--lengths", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, [int(n) for n in args.lengths.split(",")], args.nodes, args.adjacency)
        return 0
    if args.report:
        rows = json.loads(args.out.read_text())
        for r in rows:
            r.setdefault("adjacency", args.adjacency)
    else:
        models = args.models.split(",")
        lengths = {"tiny": _ints(args.tiny_lengths), "gemma": _ints(args.gemma_lengths)}
        rows = run_children(models, lengths, args.nodes, args.adjacency)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    fitted = fit(rows, f"{when}, {machine}")
    report(rows, {"module": CALIBRATION, "fitted": fitted})
    print("\nCALIBRATION = Calibration(")
    for name, value in fitted.model_dump().items():
        print(f"    {name}={value!r},")
    print(")")
    return 0


def _ints(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n]


if __name__ == "__main__":
    raise SystemExit(main())
