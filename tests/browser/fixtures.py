"""Synthetic graph JSON in circuit-tracer's ``create_graph_files`` schema (see shared reference §4).

``make_graph`` builds a causally consistent graph: embeddings at every position, features and error nodes on
``n_layers`` layers, target logits at the last position; every link goes from a lower row to a higher one and
from a position to the same or a later one. Used by the fake API (tests/browser/fake_api.py) and bench/page.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


DEFAULT_TOKENS = ["<bos>", "Fact", ":", " the", " capital", " of", " the", " state", " containing", " Dallas", " is"]
VOCAB = [" Austin", " Texas", " the", " Houston", " a", " Dallas", " known", " Sacramento", " in", " not"]


def tokenize(prompt: str) -> list[str]:
    """Naive tokeniser for the fake API: BOS + words with their leading space."""
    import re

    return ["<bos>", *re.findall(r"\s*\S+", prompt)] if prompt else ["<bos>"]


def token_id(text: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % 50000


def make_graph(
    slug: str = "dallas-austin-fixture",
    prompt_tokens: list[str] | None = None,
    n_layers: int = 6,
    n_features: int = 60,
    n_links: int = 600,
    n_logits: int = 3,
    seed: int = 0,
    with_errors: bool = True,
    labels: bool = True,
    target_tokens: list[str] | None = None,
) -> dict:
    rng = random.Random(seed)
    tokens = list(prompt_tokens or DEFAULT_TOKENS)
    n_pos = len(tokens)
    nodes: list[dict] = []

    def node(node_id, feature, layer, ctx, ftype, **kw):
        d = {
            "node_id": node_id,
            "feature": feature,
            "layer": str(layer),
            "ctx_idx": ctx,
            "feature_type": ftype,
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": kw.pop("js", node_id),
            "clerp": "",
            "influence": None,
            "activation": None,
        }
        d.update(kw)
        nodes.append(d)
        return d

    # rows: 0 = embeddings, 1..n_layers = layers, n_layers+1 = logits
    by_row: list[list[dict]] = [[] for _ in range(n_layers + 2)]
    for pos, tok in enumerate(tokens):
        tid = token_id(tok)
        d = node(f"E_{tid}_{pos}", pos, "E", pos, "embedding", js=f"E_{tid}-{pos}", clerp=f'Emb: "{tok}"')
        by_row[0].append(d)
    seen = set()
    feats = []
    while len(feats) < n_features:
        layer = rng.randrange(n_layers)
        # later positions are busier, as in real graphs
        pos = min(n_pos - 1, int(n_pos * (1 - rng.random() ** 2)))
        idx = rng.randrange(16384)
        nid = f"{layer}_{idx}_{pos}"
        if nid in seen:
            continue
        seen.add(nid)
        topic = rng.choice(["Texas", "capital cities", "say Austin", "states", "Dallas", "geography"])
        clerp = f"feature {layer}/{idx}: {topic}" if labels else ""
        d = node(
            nid,
            cantor(layer, idx),
            layer,
            pos,
            "cross layer transcoder",
            js=f"{layer}_{idx}-0",
            clerp=clerp,
            activation=round(rng.uniform(0.5, 12.0), 4),
        )
        feats.append(d)
        by_row[layer + 1].append(d)
    if with_errors:
        for layer in range(n_layers):
            for pos in range(n_pos):
                if rng.random() < 0.35 or pos == n_pos - 1:
                    d = node(f"{layer}_-1_{pos}", -1, layer, pos, "mlp reconstruction error", js=f"{layer}_-1-{pos}")
                    by_row[layer + 1].append(d)
    vocab = list(target_tokens or []) + [t for t in VOCAB if t not in (target_tokens or [])]
    n_logits = max(n_logits, len(target_tokens or []))
    probs = sorted((rng.random() for _ in range(n_logits)), reverse=True)
    tot = sum(probs) / 0.9
    for k in range(n_logits):
        text = vocab[k] if k < len(vocab) else f" tok{k}"
        tid = token_id(text) + k
        p = round(probs[k] / tot, 4)
        d = node(
            f"{n_layers + 1}_{tid}_{n_pos - 1}",
            tid,
            n_layers + 1,
            n_pos - 1,
            "logit",
            js=f"L_{tid}-{n_pos - 1}",
            token_prob=p,
            is_target_logit=k < len(target_tokens) if target_tokens else k == 0,
            clerp=f'Output "{text}" (p={p:.3f})',
        )
        by_row[n_layers + 1].append(d)

    # Influence: cumulative fraction in a random importance order (lower = more important).
    inner = [d for d in nodes if d["feature_type"] in ("cross layer transcoder", "mlp reconstruction error")]
    weights = [rng.paretovariate(1.2) for _ in inner]
    order = sorted(range(len(inner)), key=lambda i: -weights[i])
    total = sum(weights)
    acc = 0.0
    for i in order:
        acc += weights[i] / total
        inner[i]["influence"] = round(acc, 6)
    for d in nodes:
        if d["influence"] is None:
            d["influence"] = 0.0

    # Links: target sampled from rows >= 1, source from a lower row (mostly 1-3 rows below), pos <= target pos.
    links = []
    pairs = set()
    targets = [d for r in range(1, n_layers + 2) for d in by_row[r]]
    row_pos: dict[tuple[int, int], list[dict]] = {}
    for r, lst in enumerate(by_row):
        for d in lst:
            row_pos.setdefault((r, d["ctx_idx"]), []).append(d)
    row_of = {d["node_id"]: r for r, lst in enumerate(by_row) for d in lst}
    tries = 0
    max_pairs = n_links
    while len(links) < max_pairs and tries < max_pairs * 30:
        tries += 1
        t = rng.choice(targets)
        tr = row_of[t["node_id"]]
        sr = max(0, tr - 1 - int(rng.expovariate(0.7))) if rng.random() < 0.85 else rng.randrange(tr)
        sp = t["ctx_idx"] if rng.random() < 0.6 else rng.randrange(t["ctx_idx"] + 1)
        cands = row_pos.get((sr, sp))
        if not cands:
            continue
        s = rng.choice(cands)
        key = (s["node_id"], t["node_id"])
        if key in pairs:
            continue
        pairs.add(key)
        w = rng.gauss(0, 1) * (3 if sr == 0 else 1)
        if rng.random() < 0.75:
            w = abs(w)
        links.append({"source": s["node_id"], "target": t["node_id"], "weight": round(w, 5)})

    prompt = "".join(tokens[1:] if tokens and tokens[0] == "<bos>" else tokens)
    return {
        "metadata": {
            "slug": slug,
            "scan": "fixture-tiny",
            "transcoder_list": [],
            "prompt_tokens": tokens,
            "prompt": prompt,
            "node_threshold": 0.8,
            "schema_version": 1,
            "info": {
                "model": "fixture-model",
                "transcoders": "fixture-plt",
                "replacement_score": 0.7312,
                "completeness_score": 0.9034,
                "parameters": {"max_n_logits": n_logits},
            },
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }


def prune_like_server(g: dict, node_threshold: float = 0.8) -> dict:
    """Keep what circuit-tracer's pruning keeps: every feature / error node up to AND INCLUDING the one whose
    cumulative influence crosses `node_threshold` (embeddings and logits always), and the links between them."""
    inner = sorted(
        (d for d in g["nodes"] if d["feature_type"] not in ("embedding", "logit")), key=lambda d: d["influence"]
    )
    keep = {d["node_id"] for d in g["nodes"] if d["feature_type"] in ("embedding", "logit")}
    for d in inner:
        keep.add(d["node_id"])
        if d["influence"] > node_threshold:
            break
    g["nodes"] = [d for d in g["nodes"] if d["node_id"] in keep]
    g["links"] = [lk for lk in g["links"] if lk["source"] in keep and lk["target"] in keep]
    g["metadata"]["node_threshold"] = node_threshold
    return g


def make_research_graph(
    slug: str,
    prompt_tokens: list[str],
    n_features: int = 1200,
    n_links: int = 120_000,
    n_layers: int = 18,
    seed: int = 5,
    target_tokens: list[str] | None = None,
) -> dict:
    """A graph the size of a real small-model trace, pruned at 0.8 as the server prunes (hundreds of nodes, tens
    of thousands of links): the first view must still read."""
    g = make_graph(
        slug=slug,
        prompt_tokens=prompt_tokens,
        n_layers=n_layers,
        n_features=n_features,
        n_links=n_links,
        n_logits=10,
        seed=seed,
        target_tokens=target_tokens,
    )
    return prune_like_server(g)


def make_big_graph(n_nodes: int = 5000, n_links: int = 100_000, seed: int = 1) -> dict:
    """The bench graph: ~n_nodes nodes (features + errors + embeddings + logits) and n_links links."""
    tokens = ["<bos>"] + [f" w{i}" for i in range(1, 24)]
    n_layers = 26
    n_errors_est = int(n_layers * len(tokens) * 0.35) + n_layers
    g = make_graph(
        slug="bench-5k",
        prompt_tokens=tokens,
        n_layers=n_layers,
        n_features=n_nodes - len(tokens) - 10 - n_errors_est,
        n_links=n_links,
        n_logits=10,
        seed=seed,
    )
    return g


def write(path: Path, graph: dict) -> Path:
    path.write_text(json.dumps(graph))
    return path


if __name__ == "__main__":  # pragma: no cover
    g = make_big_graph()
    print(len(g["nodes"]), "nodes", len(g["links"]), "links")
