"""A hand-made graph whose subgraph scores and logit difference are computed by hand in the tests.

Tokens ``<bos> a b``; two layers; logits at position 2 (layer 3). Links (source → target: weight):

    E_10_1 → 0_1_1: 2        (F1, layer 0, pos 1)
    0_1_1 → 1_2_2: 3,  0_-1_2 → 1_2_2: -1,  E_11_2 → 1_2_2: 1          (F2; error Err0 = 0_-1_2)
    E_11_2 → 1_3_2: 2,  0_1_1 → 1_3_2: -2                              (F3)
    1_2_2 → 3_100_2: 4,  1_3_2 → 3_100_2: -1,  0_-1_2 → 3_100_2: 3,  1_-1_2 → 3_100_2: 2    (logit " yes")
    1_2_2 → 3_200_2: 1,  1_3_2 → 3_200_2: 2,  0_-1_2 → 3_200_2: 3                         (logit " no")
"""

from __future__ import annotations

LINKS = [
    ("E_10_1", "0_1_1", 2.0),
    ("0_1_1", "1_2_2", 3.0),
    ("0_-1_2", "1_2_2", -1.0),
    ("E_11_2", "1_2_2", 1.0),
    ("E_11_2", "1_3_2", 2.0),
    ("0_1_1", "1_3_2", -2.0),
    ("1_2_2", "3_100_2", 4.0),
    ("1_3_2", "3_100_2", -1.0),
    ("0_-1_2", "3_100_2", 3.0),
    ("1_-1_2", "3_100_2", 2.0),
    ("1_2_2", "3_200_2", 1.0),
    ("1_3_2", "3_200_2", 2.0),
    ("0_-1_2", "3_200_2", 3.0),
]


def make_scores_graph(slug: str = "scores-fixture") -> dict:
    def node(node_id, layer, ctx, ftype, **kw):
        d = {
            "node_id": node_id,
            "feature": 0,
            "layer": str(layer),
            "ctx_idx": ctx,
            "feature_type": ftype,
            "token_prob": 0.0,
            "is_target_logit": False,
            "jsNodeId": node_id,
            "clerp": "",
            "influence": 0.1,
            "activation": None,
        }
        d.update(kw)
        return d

    feat = "cross layer transcoder"
    err = "mlp reconstruction error"
    nodes = [
        node("E_1_0", "E", 0, "embedding", clerp='Emb: "<bos>"'),
        node("E_10_1", "E", 1, "embedding", clerp='Emb: " a"'),
        node("E_11_2", "E", 2, "embedding", clerp='Emb: " b"'),
        node("0_1_1", 0, 1, feat, clerp="F1", activation=1.0, influence=0.2),
        node("0_-1_2", 0, 2, err, influence=0.3),
        node("1_2_2", 1, 2, feat, clerp="F2", activation=2.0, influence=0.25),
        node("1_3_2", 1, 2, feat, clerp="F3", activation=3.0, influence=0.35),
        node("1_-1_2", 1, 2, err, influence=0.4),
        node("3_100_2", 3, 2, "logit", clerp='Output " yes" (p=0.600)', token_prob=0.6, is_target_logit=True),
        node("3_200_2", 3, 2, "logit", clerp='Output " no" (p=0.300)', token_prob=0.3),
    ]
    return {
        "metadata": {
            "slug": slug,
            "scan": "fixture-tiny",
            "prompt_tokens": ["<bos>", " a", " b"],
            "prompt": " a b",
            "node_threshold": 0.8,
            "schema_version": 1,
            "info": {"model": "fixture-model"},
        },
        "qParams": {},
        "nodes": nodes,
        "links": [{"source": s, "target": t, "weight": w} for s, t, w in LINKS],
    }
