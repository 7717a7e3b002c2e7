"""Do circuit-tracer 0.5.0 and our engine read the transcoder sets written here the same way? (issue 17, item 5)

    .venv/bin/python bench/peer_transcoders.py                     # every kind we write, on tiny Llama and Gemma 3
    .venv/bin/python bench/peer_transcoders.py --set models/gemma-3-270m/transcoders --model gemma3   # a real set

For each set: circuit-tracer loads it the way it loads a local set — `load_transcoders(config.yaml)` for a
per-layer set (layer paths made absolute: circuit-tracer resolves them against the working directory), its
local CLT loader `load_clt(folder, hooks and scan from config.yaml)` for a cross-layer one (its
`load_transcoders` fetches CLTs from the hub only), and `load_transcoders` for any other `model_kind` (which
refuses it). A set that loads runs in circuit-tracer's `ReplacementModel` (nnsight backend, fp32, CPU) on a
prompt's token ids; its transcoder activations (`get_activations`, position 0 zeroed on both sides) are compared
with our engine's on the same model folder and ids — same active features, max |Δ activation| — and its
reconstruction of the MLP outputs from our MLP inputs with ours. A set that does not load shows circuit-tracer's
own message. Tiny mode writes random sets of every kind through the engine's writer and trains six here on a
small activation cache of the tiny model (PLT and CLT: TopK, TopK written as JumpReLU, JumpReLU).

Needs `.bench/ct-venv` (made by bench/peer_circuit_tracer.py's first step, done here when missing). Tiny models
are made in the ct venv (transformers 4.57.3) and read by both sides; `--model gemma3` uses the Gemma-3-270M folder
of bench/peer_circuit_tracer.py. Results: `.bench/peer-sets/results.json` and the table printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import peer_circuit_tracer as peer  # noqa: E402  (standard library only at import)

OUT = peer.BENCH / "peer-sets"
WORDS = "the a of in is was and to on at city state river town people texas dallas austin paris france".split()
PROMPT_WORDS = "the city of dallas is in the state of texas and austin is".split()
RANDOM_KINDS = {  # name: random_transcoder_set arguments
    "plt-relu": {"kind": "relu"},
    "plt-jumprelu-skip": {"kind": "jumprelu", "skip": True},
    "plt-topk": {"kind": "topk", "k": 6},
    "clt-relu": {"kind": "relu", "cross_layer": True},
    "clt-jumprelu": {"kind": "jumprelu", "cross_layer": True},
    "clt-topk": {"kind": "topk", "k": 6, "cross_layer": True},
    "clt-jumprelu-skip": {"kind": "jumprelu", "cross_layer": True, "skip": True},
}
TRAINED_KINDS = {  # name: TrainConfig fields; `-as-jumprelu`: TopK written as JumpReLU, what the CLI budgets write
    "trained-plt-topk-as-jumprelu": {"activation": "topk", "skip": True, "jumprelu_export": True},
    "trained-plt-topk": {"activation": "topk", "skip": True},
    "trained-plt-jumprelu-skip": {"activation": "jumprelu", "skip": True},
    "trained-clt-topk-as-jumprelu": {"kind": "clt", "activation": "topk", "skip": False, "jumprelu_export": True},
    "trained-clt-topk": {"kind": "clt", "activation": "topk", "skip": False},
    "trained-clt-jumprelu": {"kind": "clt", "activation": "jumprelu", "skip": False},
}

CT_TINY_MODEL = r"""
import sys, torch
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, PreTrainedTokenizerFast
arch, out, words = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split()
special = ["<pad>", "<bos>", "<eos>", "<unk>"]
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(special + words)}, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                               unk_token="<unk>")
common = dict(vocab_size=len(special) + len(words), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
              pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
if arch == "gemma3":
    cfg = Gemma3TextConfig(**common, query_pre_attn_scalar=16, sliding_window=64)
else:
    cfg = LlamaConfig(**common)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
with torch.no_grad():  # weights large enough for activations that differ from token to token
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0, 0.2 if "embed" in name else p.shape[-1] ** -0.5)
        elif "norm" in name:
            p.normal_(0.0 if arch == "gemma3" else 1.0, 0.1)
model.save_pretrained(out)
fast.save_pretrained(out)
print(out, type(model).__name__, file=sys.stderr)
"""


# ------------------------------------------------------------------------------------------------ our side


def tiny_model(arch: str) -> Path:
    out = OUT / arch / "model"
    if not (out / "config.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        peer.sh([peer.CT_PY, "-c", CT_TINY_MODEL, arch, out, " ".join(WORDS)], env=peer._env())
    return out


def write_random_sets(model_dir: Path, root: Path) -> dict[str, Path]:
    from circuitboard.engine.loading import layer_count
    from circuitboard.engine.transcoders import random_transcoder_set, save_transcoder_set

    n_layers, sets = layer_count(model_dir), {}
    for name, kw in RANDOM_KINDS.items():
        tset = random_transcoder_set(n_layers, 64, 96, seed=1, **kw)
        tset.name = f"peer-{name}"
        sets[name] = save_transcoder_set(tset, root / name, model_name="tiny")
    return sets


def train_sets(model_dir: Path, root: Path) -> dict[str, Path]:
    """PLT and CLT sets trained here on a small cache of the tiny model (4,000 tokens, a few seconds each)."""
    import random
    from dataclasses import replace

    from circuitboard.data.activations import cache_from_texts, load_cache_model
    from circuitboard.training.config import TrainConfig
    from circuitboard.training.train import train_transcoders

    model, tok = load_cache_model(model_dir)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(200)]
    cache = root / "cache"
    cache_from_texts(model, tok, texts, cache, n_seqs=160, seq_len=32, n_heldout=32, model_name="tiny")
    base = TrainConfig(width=96, k=6, train_tokens=4_000, heldout_tokens=992, steps_tokens=20_000, batch_size=128,
                       lr=3e-3, warmup_steps=10, dead_window=2_000, chunk_tokens=2_048)  # fmt: skip
    sets = {}
    for name, fields in TRAINED_KINDS.items():
        cfg = replace(base, **fields)
        train_transcoders(cache, root / name, cfg, model_name="tiny", progress=False, log=lambda s: None)
        sets[name] = root / name
    return sets


def our_side(model_dir: Path, set_dir: Path, ids: list[int], out: Path) -> None:
    """Our engine's activations (position 0 zeroed), MLP inputs and reconstructions on `ids`, saved to `out`."""
    import numpy as np
    import torch

    from circuitboard.engine.replacement import build_context
    from circuitboard.engine.session import Engine

    engine = Engine.load(model_dir, set_dir, device="cpu", dtype="float32")
    ctx = build_context(engine.adapter, engine.tset, torch.tensor(ids))
    acts = torch.stack(ctx.acts)
    np.savez(out, acts=acts.numpy(), mlp_in=ctx.mlp_in.numpy(), recon=(ctx.mlp_out - ctx.errors).numpy())


def prompt_ids(model_dir: Path, text: str | None) -> list[int]:
    from circuitboard.engine.loading import bos_token_id, load_tokenizer

    tok = load_tokenizer(model_dir)
    body = tok(text if text is not None else " ".join(PROMPT_WORDS), add_special_tokens=False).input_ids
    return [int(bos_token_id(tok) or 0), *body]


# ------------------------------------------------------------------------------------------------ circuit-tracer side


def ct_load(folder: Path):  # noqa: ANN201  (circuit-tracer's types; runs in the ct venv)
    """circuit-tracer's own loaders, the way a local set is loaded there."""
    import torch
    import yaml
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from circuit_tracer.utils.hf_utils import load_transcoders

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    kw = {"device": torch.device("cpu"), "dtype": torch.float32}
    if cfg.get("model_kind") == "cross_layer_transcoder":
        hooks = {k: cfg[k] for k in ("feature_input_hook", "feature_output_hook", "scan")}
        return load_clt(str(folder), **hooks, lazy_decoder=False, **kw)
    if "transcoders" in cfg:
        cfg["transcoders"] = [p if p.startswith("hf://") else str(folder / p) for p in cfg["transcoders"]]
    return load_transcoders(cfg, **kw)


def ct_layer_refusal(folder: Path) -> str | None:
    """What circuit-tracer's per-layer loader says to a TopK layer file loaded directly."""
    import torch
    from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder

    file = folder / "layer_0.safetensors"
    if not file.exists():
        return None
    try:
        load_relu_transcoder(str(file), 0, device=torch.device("cpu"))
    except Exception as e:  # noqa: BLE001  (reporting circuit-tracer's message is the point)
        return f"{type(e).__name__}: {str(e).splitlines()[-1].strip()}"
    return None


def ct_case(case: dict) -> dict:
    import numpy as np
    import torch
    from circuit_tracer import ReplacementModel

    torch.set_num_threads(2)
    folder = Path(case["set"])
    out: dict = {"name": case["name"], "model_kind": _kind(folder)}
    try:
        tset = ct_load(folder)
    except Exception as e:  # noqa: BLE001
        out.update(loads=False, message=f"{type(e).__name__}: {e}", layer_file=ct_layer_refusal(folder))
        return out
    model = ReplacementModel.from_pretrained_and_transcoders(
        case["model"], tset, backend="nnsight", device=torch.device("cpu"), dtype=torch.float32
    )
    _, acts = model.get_activations(torch.tensor([case["ids"]]))
    ours = np.load(case["ours"])
    recon = tset.compute_attribution_components(torch.from_numpy(ours["mlp_in"]))["reconstruction"]
    out.update(loads=True, **compare(acts.float().numpy(), ours["acts"], recon.float().numpy(), ours["recon"]))
    return out


def _kind(folder: Path) -> str:
    import yaml

    return str(yaml.safe_load((folder / "config.yaml").read_text()).get("model_kind"))


def compare(acts_ct, acts_ours, recon_ct, recon_ours) -> dict:  # noqa: ANN001  (numpy arrays)
    import numpy as np

    on_ct, on_ours = acts_ct > 0, acts_ours > 0
    scale = max(float(np.abs(acts_ours).max()), 1e-12)
    return {
        "active_ours": int(on_ours.sum()),
        "active_ct": int(on_ct.sum()),
        "active_differ": int((on_ct != on_ours).sum()),
        "max_abs_diff": float(np.abs(acts_ct - acts_ours).max()),
        "max_rel_diff": float(np.abs(acts_ct - acts_ours).max()) / scale,
        "recon_rel_diff": float(np.abs(recon_ct - recon_ours).max() / max(np.abs(recon_ours).max(), 1e-12)),
    }


# ------------------------------------------------------------------------------------------------ driver


def run_ct(cases: list[dict]) -> list[dict]:
    spec = OUT / "cases.json"
    spec.write_text(json.dumps(cases))
    res = subprocess.run([str(peer.CT_PY), __file__, "--_ct", str(spec)], env=peer._env(), capture_output=True,
                         text=True)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"circuit-tracer side failed:\n{res.stderr[-4000:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def verdict(r: dict) -> str:
    if not r["loads"]:
        return "refused: " + r["message"].splitlines()[0]
    ok = r["active_differ"] == 0 and r["max_rel_diff"] <= 1e-5 and r["recon_rel_diff"] <= 1e-5
    return "loads, same features" if ok else "loads, DIFFERS"


def print_table(results: list[dict]) -> None:
    print(f"\n{'model':<8} {'set':<30} {'model_kind':<30} {'active (ours/ct/differ)':>24} {'max |Δa|':>9} "
          f"{'max |Δa|/max a':>14} {'Δ recon':>9}  circuit-tracer 0.5.0")  # fmt: skip
    for r in results:
        if r["loads"]:
            nums = (f"{r['active_ours']}/{r['active_ct']}/{r['active_differ']:>3} {r['max_abs_diff']:9.1e} "
                    f"{r['max_rel_diff']:14.1e} {r['recon_rel_diff']:9.1e}")  # fmt: skip
        else:
            nums = f"{'–':>24} {'–':>9} {'–':>14} {'–':>9}"
        print(f"{r['model']:<8} {r['name']:<30} {r['model_kind']:<30} {nums:>60}  {verdict(r)}")
        if not r["loads"] and r.get("layer_file"):
            print(f"{'':<40} (a layer file loaded directly: {r['layer_file']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", type=Path, help="check this set folder instead of the tiny ones")
    ap.add_argument("--model", default="gemma3", help="with --set: gemma3 | smollm2 (bench/peer_circuit_tracer.py)")
    ap.add_argument("--prompt", default="The capital of the state containing Dallas is")
    ap.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "gemma-3-270m" / "model",
                    help="with --set: the folder whose tokenizer makes the prompt's ids (4.57.3's Gemma-3 GGUF "
                    "tokenizer, in the bench's model folder, is broken)")  # fmt: skip
    ap.add_argument("--no-train", action="store_true", help="tiny mode: only the random sets")
    ap.add_argument("--_ct", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ct:  # the circuit-tracer side, in the ct venv
        for case in json.loads(args._ct.read_text()):
            print(json.dumps(ct_case(case)), flush=True)
        return 0
    sys.path.insert(0, str(ROOT / "backend"))
    peer.ensure_ct_venv()
    cases = _set_cases(args) if args.set else _tiny_cases(not args.no_train)
    results = [{**r, "model": c["model_label"]} for c, r in zip(cases, run_ct(cases), strict=True)]
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0 if all(verdict(r) != "loads, DIFFERS" for r in results) else 1


def _tiny_cases(train: bool) -> list[dict]:
    cases = []
    for arch in ("llama", "gemma3"):
        model_dir = tiny_model(arch)
        sets = write_random_sets(model_dir, OUT / arch / "sets")
        if train:
            sets.update(train_sets(model_dir, OUT / arch / "sets"))
        ids = prompt_ids(model_dir, None)
        cases += [_case(arch, model_dir, name, folder, ids) for name, folder in sets.items()]
    return cases


def _set_cases(args: argparse.Namespace) -> list[dict]:
    model_dir = peer.ensure_model(args.model)
    ids = prompt_ids(args.tokenizer if (args.tokenizer / "tokenizer.json").exists() else model_dir, args.prompt)
    return [_case(args.model, model_dir, args.set.name, args.set.resolve(), ids)]


def _case(label: str, model_dir: Path, name: str, folder: Path, ids: list[int]) -> dict:
    ours = OUT / label / f"{name}.npz"
    ours.parent.mkdir(parents=True, exist_ok=True)
    our_side(model_dir, folder, ids, ours)
    return {"name": name, "model_label": label, "model": str(model_dir), "set": str(folder), "ids": ids,
            "ours": str(ours)}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
