"""Graph JSON export/import round trip, and transcoder sets written here loading back identically."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from circuitboard.engine.export import GraphFormatError, graph_from_json
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoder_files import LayerTensors, parse_hf_uri, set_config, write_config, write_layer
from circuitboard.engine.transcoders import load_transcoder_set, random_transcoder_set, save_transcoder_set
from circuitboard.engine.types import AttributionParams


@pytest.mark.parametrize(
    "kw",
    [
        dict(kind="relu"),
        dict(kind="jumprelu", skip=True),
        dict(kind="topk", k=5),
        dict(kind="jumprelu", cross_layer=True, skip=True),
    ],
    ids=["relu", "jumprelu-skip", "topk", "clt"],
)
def test_transcoder_roundtrip(tmp_path, kw):
    tset = random_transcoder_set(3, 16, 32, seed=3, **kw)
    save_transcoder_set(tset, tmp_path, model_name="tiny")
    back = load_transcoder_set(tmp_path)
    assert back.cross_layer == tset.cross_layer and back.n_layers == 3
    x = torch.randn(5, 16)
    for layer in range(3):
        a, b = tset.layers[layer], back.layers[layer]
        assert b.activation.kind == a.activation.kind and b.activation.k == a.activation.k
        assert torch.equal(tset.encode(layer, x), back.encode(layer, x))
        idx = torch.tensor([4, 1, 4, 30])  # repeated and unsorted ids through the lazy reader
        assert torch.equal(tset.decoder_rows(layer, idx), back.decoder_rows(layer, idx))
        acts = [tset.encode(i, x) for i in range(3)]
        assert torch.allclose(tset.decode(layer, acts, x), back.decode(layer, acts, x))
    if not tset.cross_layer:
        # circuit-tracer's PLT keys and shapes
        with safe_open(str(tmp_path / "layer_0.safetensors"), "pt") as f:
            keys = set(f.keys())
            assert {"W_enc", "W_dec", "b_enc", "b_dec"} <= keys
            assert f.get_tensor("W_enc").shape == (32, 16) and f.get_tensor("W_dec").shape == (32, 16)
    else:
        with safe_open(str(tmp_path / "W_dec_1.safetensors"), "pt") as f:
            assert f.get_tensor("W_dec_1").shape == (32, 2, 16)


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_layer_by_layer_writer_loads(tmp_path, activation):
    """What a trainer does: each layer's tensors as it finishes, then config.yaml; the engine reads them back."""
    g = torch.Generator().manual_seed(0)
    layers = []
    for i in range(2):
        t = LayerTensors(
            W_enc=torch.randn(32, 16, generator=g),
            b_enc=torch.randn(32, generator=g),
            b_dec=torch.randn(16, generator=g),
            W_dec=torch.randn(32, 16, generator=g),
            W_skip=torch.randn(16, 16, generator=g),
            threshold=torch.rand(32, generator=g) if activation == "jumprelu" else None,
            k=None if activation == "jumprelu" else 4,
        )
        write_layer(tmp_path, i, t)
        layers.append(t)
    write_config(tmp_path, set_config(n_layers=2, model_name="tiny", activation=activation, k=4, extra={"x": 1}))
    back = load_transcoder_set(tmp_path, lazy_decoder=False)
    assert back.n_layers == 2 and back.model_name == "tiny" and back.feature_input_hook == "mlp.hook_in"
    for t, lw in zip(layers, back.layers, strict=True):
        assert lw.activation.kind == activation and lw.activation.k == t.k
        assert torch.equal(lw.W_enc, t.W_enc) and torch.equal(lw.W_dec, t.W_dec) and torch.equal(lw.W_skip, t.W_skip)


def test_hf_uri():
    assert parse_hf_uri("hf://owner/name/l0/params.npz?revision=abc") == ("owner/name", "l0/params.npz", "abc")
    assert parse_hf_uri("hf://owner/name/layer_0.safetensors") == ("owner/name", "layer_0.safetensors", None)


def test_gemmascope_npz_layout(tmp_path):
    rng = np.random.default_rng(0)
    for layer in range(2):
        d = tmp_path / f"layer_{layer}" / "width_16k" / "average_l0_10"
        d.mkdir(parents=True)
        np.savez(
            d / "params.npz",
            W_enc=rng.normal(size=(8, 12)).astype(np.float32),
            W_dec=rng.normal(size=(12, 8)).astype(np.float32),
            b_enc=np.zeros(12, np.float32),
            b_dec=np.zeros(8, np.float32),
            threshold=np.full(12, 0.5, np.float32),
        )
    tset = load_transcoder_set(tmp_path)
    assert tset.d_transcoder == 12 and tset.d_model == 8
    assert tset.layers[0].activation.kind == "jumprelu"
    x = torch.randn(3, 8)
    W = np.load(tmp_path / "layer_0/width_16k/average_l0_10/params.npz")["W_enc"]
    assert torch.allclose(tset.pre_activations(0, x), x @ torch.from_numpy(W), atol=1e-5)


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from circuitboard.devtools.tiny import build_tiny_checkpoint

    model_dir, tc_dir = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), "llama", skip=True)
    return Engine.load(model_dir, tc_dir, device="cpu")


def test_graph_json_roundtrip(tiny_engine):
    data = tiny_engine.attribute("Dallas is in the state of", AttributionParams(max_feature_nodes=40, slug="dallas"))
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    kinds = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= kinds
    ids = {n["node_id"] for n in data["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in data["links"])
    info = data["metadata"]["info"]
    assert 0 < info["replacement_score"] <= 1 and 0 < info["completeness_score"] <= 1
    back = graph_from_json(json.loads(json.dumps(data)))
    assert back["nodes"] == data["nodes"] and back["links"] == data["links"]
    assert back["metadata"]["prompt"] == data["metadata"]["prompt"]


def test_import_accepts_old_error_ids_and_rejects_bad_input():
    node = dict(feature=-1, layer="2", ctx_idx=3, feature_type="mlp reconstruction error")
    data = {
        "metadata": {"slug": "x", "prompt_tokens": ["a"], "prompt": "a"},
        "qParams": {},
        "nodes": [
            dict(node, node_id="0_2_3"),
            dict(node_id="E_5_0", feature=0, layer="E", ctx_idx=0, feature_type="embedding"),
        ],
        "links": [{"source": "E_5_0", "target": "0_2_3", "weight": 0.5}],
    }
    out = graph_from_json(data)
    # circuit-tracer's own error ids are kept, so that an imported file exports back as it was (issue 12)
    assert out["nodes"][0]["node_id"] == "0_2_3" and out["links"][0]["target"] == "0_2_3"
    with pytest.raises(GraphFormatError, match="nodes"):
        graph_from_json({"metadata": {}, "links": []})
    with pytest.raises(GraphFormatError, match="links.0"):
        graph_from_json({**data, "links": [{"source": "nope", "target": "E_5_0", "weight": 1}]})


@pytest.mark.parametrize(
    ("kw", "kind"),
    [
        (dict(kind="relu"), "transcoder_set"),
        (dict(kind="jumprelu", skip=True), "transcoder_set"),
        (dict(kind="topk", k=5), "transcoder_set_topk"),
        (dict(kind="jumprelu", cross_layer=True), "cross_layer_transcoder"),
        (dict(kind="topk", k=5, cross_layer=True), "cross_layer_transcoder_topk"),
        (dict(kind="relu", cross_layer=True, skip=True), "cross_layer_transcoder_skip"),
    ],
)
def test_config_is_what_circuit_tracer_reads_or_refuses(tmp_path, kw, kind):
    """circuit-tracer 0.5.0 needs `scan` and hooks its maps know; what it would misread (TopK, a CLT's skip) gets a
    model_kind it refuses by name (bench/peer_transcoders.py runs it there). Ours reads every kind back."""
    import yaml

    tset = random_transcoder_set(2, 8, 16, seed=0, **kw)
    save_transcoder_set(tset, tmp_path / "set", model_name="tiny")
    conf = yaml.safe_load((tmp_path / "set" / "config.yaml").read_text())
    assert conf["model_kind"] == kind and conf["scan"] == tset.name
    assert (conf["feature_input_hook"], conf["feature_output_hook"]) == ("mlp.hook_in", "hook_mlp_out")
    back = load_transcoder_set(tmp_path / "set")
    assert back.cross_layer == tset.cross_layer and back.layers[0].activation.kind == kw["kind"]
    assert back.layers[0].activation.k == (5 if kw["kind"] == "topk" else None)


def test_unknown_model_kind_is_refused(tmp_path):
    save_transcoder_set(random_transcoder_set(2, 8, 16), tmp_path, model_name="tiny")
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace("transcoder_set", "sae"))
    with pytest.raises(ValueError, match="unknown model_kind 'sae'"):
        load_transcoder_set(tmp_path)
