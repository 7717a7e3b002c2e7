"""What `bench/transcoders.py --compare` measures of one transcoder set (issue 17), each from the files on disk
through the engine's loader, on text and prompts training never saw:

- `heldout_metrics`: per layer, explained variance, NMSE (error over the output's power), L0 and dead fraction on
  the activation cache's held-out split (a CLT's layer l is rebuilt from the features of every layer <= l);
- `replacement_kl`: KL(model || replacement model) of the next-token distribution at every position of the
  prompts, the replacement model being the model with every MLP output replaced by the transcoders' output
  computed from the replacement's own MLP inputs (errors dropped; position 0 keeps the model's);
- `graph_scores`: replacement and completeness scores of each prompt's graph at the given parameters;
- `label_quality`: the label-quality proxies of an atlas (issue 17 item 4; see `atlas.labels`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HELDOUT_CHUNK = 16  # sequences at a time: a CLT's 18 layers of dense activations stay under a GB


@torch.no_grad()
def heldout_metrics(tset: Any, cache_dir: Path, n_seqs: int = 400) -> list[dict]:
    """Per-layer figures of a materialised set (`lazy_decoder=False`) on the first `n_seqs` held-out sequences."""
    from circuitboard.data.activations import load_rows, read_manifest

    m = read_manifest(cache_dir)
    assert m is not None, f"no activation cache at {cache_dir}"
    h0, h1 = m["split"]["heldout"]
    h1 = min(h1, h0 + n_seqs)
    L = tset.n_layers
    sums = {k: torch.zeros(L, dtype=torch.float64) for k in ("sse", "power", "l0")}
    y_sum, n = torch.zeros(L, tset.d_model, dtype=torch.float64), 0
    fired = torch.zeros(L, tset.d_transcoder, dtype=torch.bool)
    for s0 in range(h0, h1, HELDOUT_CHUNK):
        rng = (s0, min(s0 + HELDOUT_CHUNK, h1))
        xs = [load_rows(cache_dir, layer, "in", rng, m).float() for layer in range(L)]
        acts = [tset.encode(layer, xs[layer]) for layer in range(L)]
        for layer in range(L):
            y = load_rows(cache_dir, layer, "out", rng, m).float()
            err = y - _reconstruct(tset, layer, acts, xs[layer])
            sums["sse"][layer] += err.pow(2).sum().item()
            sums["power"][layer] += y.pow(2).sum().item()
            sums["l0"][layer] += (acts[layer] > 0).sum().item()
            y_sum[layer] += y.sum(0).double()
            fired[layer] |= (acts[layer] > 0).any(0)
        n += len(xs[0])
    sst = sums["power"] - y_sum.pow(2).sum(1) / n
    return [
        {
            "explained_variance": float(1 - sums["sse"][layer] / sst[layer]),
            "nmse": float(sums["sse"][layer] / sums["power"][layer]),
            "l0": float(sums["l0"][layer] / n),
            "dead_fraction": float(1 - fired[layer].float().mean()),
        }
        for layer in range(L)
    ] + [{"tokens": n}]


def _reconstruct(tset: Any, layer: int, acts: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Dense decoding (many rows at once; the engine's decoder is made for a prompt's few positions)."""
    lw = tset.layers[layer]
    out = lw.b_dec.expand(len(x), -1).clone()
    for src in range(layer + 1) if tset.cross_layer else (layer,):
        W = tset.layers[src].W_dec
        out += acts[src] @ (W[:, layer - src] if tset.cross_layer else W)
    skip = tset.skip(layer, x)
    return out if skip is None else out + skip


@torch.no_grad()
def replacement_kl(engine: Any, prompts: list[str]) -> float:
    """Mean over the prompts' positions >= 1 of KL(p_model || p_replacement) of the next token, in nats."""
    from circuitboard.engine.adapters import mlp_io_modules

    model, tset, total, count = engine.model, engine.tset, 0.0, 0
    for prompt in prompts:
        ids = engine.encode(prompt)[None]
        ref = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
        hooks = _replacement_hooks(model, tset, mlp_io_modules)
        try:
            rep = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
        finally:
            for h in hooks:
                h.remove()
        kl = (ref.exp() * (ref - rep)).sum(-1)[1:]
        total, count = total + kl.sum().item(), count + len(kl)
    return total / max(count, 1)


def _replacement_hooks(model: Any, tset: Any, mlp_io_modules: Callable) -> list:
    """Forward hooks that make `model` the replacement model: each layer's MLP output is the transcoders' output
    from the features of the live MLP inputs so far (position 0, BOS, keeps the model's own)."""
    acts: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for layer in range(tset.n_layers):
        mod_in, mod_out = mlp_io_modules(model, layer)

        def read(_m: Any, _a: Any, out: torch.Tensor, layer: int = layer) -> None:
            x = out[0]
            a = tset.encode(layer, x)
            a[0] = 0
            acts[layer], inputs[layer] = a, x

        def write(_m: Any, _a: Any, out: torch.Tensor, layer: int = layer) -> torch.Tensor:
            all_acts = [acts.get(i, torch.zeros(0)) for i in range(layer + 1)]
            recon = tset.decode(layer, all_acts, inputs[layer]).to(out.dtype)
            recon[0] = out[0, 0]
            return recon[None]

        handles += [mod_in.register_forward_hook(read), mod_out.register_forward_hook(write)]
    return handles


def graph_scores(engine: Any, prompts: list[str], max_feature_nodes: int, batch_size: int = 64) -> list[dict]:
    """Replacement and completeness scores of each prompt's graph (the engine's defaults otherwise)."""
    from circuitboard.engine.types import AttributionParams

    out = []
    for prompt in prompts:
        g = engine.attribute(prompt, AttributionParams(max_feature_nodes=max_feature_nodes, batch_size=batch_size))
        info = g["metadata"].get("info", {})
        out.append(
            {"prompt": prompt, "replacement": info["replacement_score"], "completeness": info["completeness_score"]}
        )
    return out


@torch.no_grad()
def label_quality(atlas_path: Path, cache_dir: Path, tset: Any, n_seqs: int = 200) -> dict | None:
    """How much of each live feature's held-out activation mass falls on the input tokens its label names, and
    how much of its top decoder-logit mass the output tokens it names carry: for the labels the atlas stores
    (`auto_label`: one or two input tokens, the top output token) and for `describe`'s, by depth (early / middle
    / late thirds of the layers). None without an atlas. The atlas scans the cache's held-out split too, so the
    input shares are in-sample for the atlas's statistics, out of sample for training."""
    from circuitboard.atlas.store import AtlasStore

    if not Path(atlas_path).exists():
        return None
    store = AtlasStore(atlas_path)
    n_layers = int(store.get_meta("n_layers", tset.n_layers))
    tokens, rows = _heldout_tokens(cache_dir, n_seqs)
    groups: dict[str, dict[str, list[torch.Tensor]]] = {}
    for layer in range(n_layers):
        named = _named_tokens(store, layer, n_layers, tset.d_transcoder)
        shares = _heldout_shares(tset, layer, cache_dir, rows, tokens, named)
        live = shares.pop("live")
        g = groups.setdefault(("early", "middle", "late")[min(2, 3 * layer // n_layers)], {})
        for key, values in {**shares, "write_old": named["write_old"], "write_new": named["write_new"]}.items():
            g.setdefault(key, []).append(values[live].float())
    return {
        group: {"features": len(torch.cat(g["read_new"]))} | {k: float(torch.cat(v).mean()) for k, v in g.items()}
        for group, g in groups.items()
    }


def _heldout_tokens(cache_dir: Path, n_seqs: int) -> tuple[torch.Tensor, tuple[int, int]]:
    import numpy as np

    from circuitboard.data.activations import open_tokens, read_manifest

    m = read_manifest(cache_dir)
    assert m is not None
    h0, h1 = m["split"]["heldout"]
    rows = (h0, min(h1, h0 + n_seqs))
    toks = np.asarray(open_tokens(cache_dir, m)[rows[0] : rows[1], 1:], dtype=np.int64).reshape(-1)
    return torch.from_numpy(toks), rows


def _named_tokens(store: Any, layer: int, n_layers: int, width: int) -> dict[str, torch.Tensor]:
    """Per feature: the input token ids the stored label and `describe` name ([width, 3], -1 where none), and
    the write shares of their output tokens."""
    from circuitboard.atlas import labels

    old, new = torch.full((width, 3), -1), torch.full((width, 3), -1)
    w_old, w_new = torch.zeros(width), torch.zeros(width)
    for raw in store.iter_layer(layer):
        i = raw["idx"]
        ins = [(t, float(m)) for t, m, _ in json.loads(raw["inputs"])]
        outs = [(t, float(v)) for t, v in json.loads(raw["logits"])["top"]]
        first = ins[0][1] if ins else 0.0
        old_in = [0] + ([1] if len(ins) > 1 and first > 0 and ins[1][1] >= 0.5 * first else []) if ins else []
        for j, k in enumerate(old_in):
            old[i, j] = ins[k][0]
        for j, k in enumerate(labels.named_inputs(ins)):
            new[i, j] = ins[k][0]
        w_old[i] = labels.write_share(outs, [0] if outs and outs[0][1] > 0 else [])
        w_new[i] = labels.write_share(outs, labels.named_outputs(outs))
    return {"old": old, "new": new, "write_old": w_old, "write_new": w_new}


def _heldout_shares(
    tset: Any, layer: int, cache_dir: Path, rows: tuple[int, int], tokens: torch.Tensor, named: dict
) -> dict[str, torch.Tensor]:
    from circuitboard.data.activations import load_rows

    x = load_rows(cache_dir, layer, "in", rows).float()
    total = torch.zeros(tset.d_transcoder, dtype=torch.float64)
    on = {"old": total.clone(), "new": total.clone()}
    for i in range(0, len(x), 2048):
        a = tset.encode(layer, x[i : i + 2048]).clamp_min(0)
        tok = tokens[i : i + 2048, None, None]
        total += a.sum(0).double()
        for key in on:
            hit = (tok == named[key][None]).any(-1)  # [rows, width]: the row's token is one the label names
            on[key] += (a * hit).sum(0).double()
    live = total > 0
    safe = total.clamp_min(1e-12)
    return {"read_old": on["old"] / safe, "read_new": on["new"] / safe, "live": live}
