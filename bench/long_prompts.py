"""Long prompts: wall time and peak memory of one trace per prompt length (issue 16).

    .venv/bin/python bench/long_prompts.py                      # default preset, 64 / 256 / 1024 tokens
    .venv/bin/python bench/long_prompts.py --quick              # 64 and 256 tokens
    .venv/bin/python bench/long_prompts.py --lengths 512 --max-feature-nodes 2000 --threads 2

Each length runs in its own process (peak RSS, `ru_maxrss`, is per process and never goes down), loading the
model and transcoders and tracing a prompt of that many tokens (cut from a fixed English text) with
`Engine.attribute` — trace, prune and export, as `circuitboard trace` does. Prints one line per length:
tokens, active features, the phases' times, the whole trace's wall time and the process's peak RSS.
Figures and the memory model: bench/README.md ("Long prompts").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A plain English text, varied so that it is not one phrase repeated; cut to the length asked.
_PARAGRAPH = (
    "The history of {topic} begins long before the first farmers arrived. Glaciers carved the hills, and when "
    "the ice retreated it left behind a wide plain of gravel and clay. Over thousands of years, forests grew on "
    "the slopes, and the river changed its course many times, cutting new channels and abandoning old ones. "
    "People came to hunt deer and to fish for salmon, and later they cleared the forest to plant wheat and "
    "barley. They built houses of timber and stone, and they traded with the towns along the coast, sending "
    "grain and wool downstream in flat boats. In the spring the river flooded the fields, and the farmers "
    "learned to build their villages on the higher ground. The market town grew around a bridge, and its "
    "church tower could be seen from every farm. Merchants brought salt, iron tools and cloth, and they took "
    "away cheese, leather and timber. When the railway arrived, the old river trade declined, but the town grew "
    "larger, and factories were built beside the station. Today {topic} is quiet again: the factories have "
    "closed, the fields are green, and visitors walk along the river to watch the herons and the kingfishers.\n"
)
_TOPICS = ["the river valley", "the old mill", "the harbour", "the school", "the castle", "the forest", "the moor"]


def long_text(n_paragraphs: int = 24) -> str:
    return "".join(_PARAGRAPH.format(topic=_TOPICS[i % len(_TOPICS)]) for i in range(n_paragraphs))


def run_one(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from circuitboard.engine.session import Engine
    from circuitboard.engine.types import AttributionParams
    from circuitboard.presets import resolve_preset

    preset = resolve_preset(args.preset)
    t0 = time.perf_counter()
    engine = Engine.load(preset.model_dir, preset.transcoders_dir)
    load_s = time.perf_counter() - t0
    ids = engine.encode(long_text())[: args.one]
    prompt = engine.tokenizer.decode(ids[1:].tolist())  # without the BOS the engine adds back
    params = AttributionParams(max_feature_nodes=args.max_feature_nodes, precision=args.precision)
    t1 = time.perf_counter()
    graph = engine.attribute_graph(prompt, params)
    trace_s = time.perf_counter() - t1
    data = engine.export(graph, params)
    total_s = time.perf_counter() - t1
    return {
        "tokens": graph.n_pos,
        "active_features": graph.info["n_active_features"],
        "load_s": load_s,
        **{k: v for k, v in graph.info["timings"].items()},
        "attribute_s": trace_s,
        "trace_prune_export_s": total_s,
        "nodes": len(data["nodes"]),
        "links": len(data["links"]),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gemma-3-270m")
    p.add_argument("--lengths", default="64,256,1024", help="comma-separated token counts")
    p.add_argument("--quick", action="store_true", help="64 and 256 tokens")
    p.add_argument("--max-feature-nodes", type=int, default=2000)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process: one length
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args)))
        return 0
    lengths = [64, 256] if args.quick else [int(n) for n in args.lengths.split(",")]
    print(f"{'tokens':>6} {'active':>8} {'forward':>8} {'features':>9} {'trace+prune+export':>19} {'peak RSS':>9}")
    for n in lengths:
        cmd = [sys.executable, __file__, "--one", str(n), "--preset", args.preset, "--threads", str(args.threads)]
        cmd += ["--max-feature-nodes", str(args.max_feature_nodes), "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return out.returncode
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['tokens']:>6} {r['active_features']:>8} {r['forward_s']:>7.1f}s {r['features_s']:>8.1f}s "
            f"{r['trace_prune_export_s']:>18.1f}s {r['peak_rss_gib']:>7.2f}GiB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
