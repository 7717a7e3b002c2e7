"""engine/native.py: a model folder read without transformers must be the model transformers loads.

Per architecture: the same logits and attention patterns (from our own forward on the native weights) as the
transformers model's own forward, the same token ids and texts as its tokenizer, the same attribution graph as
an engine loaded through transformers; both config formats (transformers 5's `rope_parameters`, 4's `rope_theta`
+ `rope_scaling` + Gemma 3's `sliding_window_pattern`); None (load through transformers) for what it does not
know; and `circuitboard trace` on a plain folder never imports transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from circuitboard.devtools.tiny import ARCHITECTURES, build_tiny_checkpoint, build_tiny_model, tiny_config
from circuitboard.engine import patterns
from circuitboard.engine.adapters import get_adapter
from circuitboard.engine.file_tokenizer import FileTokenizer, RemoteTokenizer, model_type_of, start_tokenizer
from circuitboard.engine.interventions import capture_patterns
from circuitboard.engine.native import NativeModel, load_native
from circuitboard.engine.replacement import build_context
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoders import random_transcoder_set
from circuitboard.engine.types import AttributionParams, FeatureIntervention, InterventionRequest

CPU = torch.device("cpu")
TEXTS = [
    "The capital of the state containing Dallas is",
    "  leading spaces, tabs\tand\nnewlines",
    "naïve café — 😀 日本語 ∑x²",
    "<bos> in the middle <eos> and <pad>",
    "1 + 1 = 2. 36 + 59 =",
]


def _save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """arch -> (folder, transformers model with our pattern attention)."""
    out = {}
    for arch in ARCHITECTURES:
        model, tok = build_tiny_model(arch, seed=0)
        patterns.use_pattern_attention(model)
        out[arch] = (_save(model, tok, tmp_path_factory.mktemp(arch)), model)
    return out


def _native(folder: Path) -> tuple[NativeModel, Any, str]:
    loaded = load_native(folder, device=CPU, dtype=torch.float32)
    assert loaded is not None
    return loaded


def _ids(n: int = 14, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor([1]), torch.randint(3, 380, (n - 1,), generator=g)])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_native_forward_is_the_models(folders, arch):
    folder, hf = folders[arch]
    model, _, _ = _native(folder)
    native, reference = get_adapter(model), get_adapter(hf)
    ids = _ids()
    tset = random_transcoder_set(native.n_layers, native.d_model, 32, kind="relu", seed=0)
    ctx = build_context(native, tset, ids, all_logits=True)
    with torch.no_grad():
        logits = hf(input_ids=ids[None], use_cache=False).logits[0]
    # The sequence is longer than the Gemma models' sliding window (4), so both masks are exercised.
    scale = float(logits.abs().max())
    assert float((ctx.logits - logits).abs().max()) <= 1e-5 * scale
    for ours, theirs in zip(ctx.patterns, capture_patterns(reference, ids), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hf.parameters())
    assert native.architecture == reference.architecture and native.softcap == reference.softcap


def _same_tokenizer(tok: Any, ref: Any) -> None:
    for text in TEXTS:
        for special in (True, False):
            assert tok(text, add_special_tokens=special).input_ids == ref(text, add_special_tokens=special).input_ids
    for ids in ([5, 6, 7], [1, 40, 2], list(range(300, 320))):
        assert tok.decode(ids) == ref.decode(ids)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        ref.bos_token_id,
        ref.eos_token_id,
        ref.pad_token_id,
    )
    # transformers' model-specific classes may add an unknown token the file does not hold; the named ones agree.
    assert set(tok.all_special_ids) <= set(ref.all_special_ids)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_native_tokenizer_is_the_models(folders, arch):
    folder, _ = folders[arch]
    _, tok, _ = _native(folder)
    # transformers tokenizes Qwen 2 by its own class's rules whatever the file says: its tokenizer is used there.
    assert isinstance(tok, FileTokenizer) == (arch != "qwen2")
    _same_tokenizer(tok, AutoTokenizer.from_pretrained(folder))


def test_gemma_tokenizer_class(folders, tmp_path):
    """Gemma's class (what a Gemma 3 folder declares) runs as its tokenizer.json: a SentencePiece-style BPE
    with byte fallback, built by transformers' GemmaTokenizer and saved, reads the same both ways."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    base = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    base.normalizer = normalizers.Replace(" ", "▁")
    base.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *(f"<0x{b:02X}>" for b in range(256))]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    base.train_from_iterator(TEXTS * 8, trainer=trainer)
    spec = json.loads(base.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    folder = tmp_path / "gemma-tok"
    folder.mkdir()
    src, _ = folders["gemma3"]
    for f in ("config.json", "model.safetensors"):
        (folder / f).write_bytes((src / f).read_bytes())
    GemmaTokenizer(vocab=spec["vocab"], merges=merges).save_pretrained(folder)
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "GemmaTokenizer"
    _, tok, _ = _native(folder)
    assert isinstance(tok, FileTokenizer)
    _same_tokenizer(tok, AutoTokenizer.from_pretrained(folder))


@pytest.mark.parametrize(("arch", "kind", "skip"), [("llama", "relu", False), ("gemma3", "jumprelu", True)])
def test_trace_only_engine_gives_the_same_graph(tmp_path, arch, kind, skip):
    model_dir, tc_dir = build_tiny_checkpoint(tmp_path, arch, kind=kind, skip=skip)
    lean = Engine.load(model_dir, tc_dir, device="cpu", trace_only=True, warm_up=False)
    full = Engine.load(model_dir, tc_dir, device="cpu", warm_up=False)
    assert isinstance(lean.model, NativeModel) and not isinstance(full.model, NativeModel)
    params = AttributionParams(max_feature_nodes=40, batch_size=16)
    prompt = "The opposite of hot is cold, and the opposite of big is"
    a = lean.attribute_graph(prompt, params)
    b = full.attribute_graph(prompt, params)
    assert a.input_tokens.tolist() == b.input_tokens.tolist()
    assert torch.equal(a.selected_features, b.selected_features)
    A, B = a.adjacency_matrix, b.adjacency_matrix
    assert float((A - B).abs().max()) <= 1e-6 * float(B.abs().max())
    assert lean.export(a, params)["nodes"] == full.export(b, params)["nodes"]
    # A call that runs the model itself loads it through transformers, then behaves as the full engine.
    req = InterventionRequest(
        prompt=prompt, interventions=[FeatureIntervention(layer=1, feature=3, mode="scale", value=-2.0)], n_tokens=3
    )
    assert lean.intervene(req) == full.intervene(req)
    assert not isinstance(lean.model, NativeModel)


def _rewrite_config(folder: Path, edit) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_transformers_4_config_format(folders, tmp_path):
    """Folders saved by transformers 4 (circuit-tracer's pin) name rope and sliding layers differently."""
    for arch in ("llama", "gemma3"):
        src, hf = folders[arch]
        folder = tmp_path / arch
        folder.mkdir()
        for f in src.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())

        def to_v4(cfg, arch=arch):
            params = cfg.pop("rope_parameters")
            if arch == "gemma3":
                cfg["rope_theta"] = params["full_attention"]["rope_theta"]
                cfg["rope_local_base_freq"] = params["sliding_attention"]["rope_theta"]
                cfg["rope_scaling"] = None
                cfg.pop("layer_types")
                cfg["sliding_window_pattern"] = 2  # sliding, full, sliding: the tiny model's layer types
            else:
                cfg["rope_theta"], cfg["rope_scaling"] = params["rope_theta"], None

        _rewrite_config(folder, to_v4)
        model, _, _ = _native(folder)
        ids = _ids()
        tset = random_transcoder_set(len(get_adapter(model).blocks), 64, 32, kind="relu", seed=0)
        ctx = build_context(get_adapter(model), tset, ids, all_logits=True)
        with torch.no_grad():
            logits = hf(input_ids=ids[None], use_cache=False).logits[0]
        assert float((ctx.logits - logits).abs().max()) <= 1e-5 * float(logits.abs().max()), arch


def test_linear_rope_scaling(tmp_path):
    _, tok = build_tiny_model("llama")
    cfg = tiny_config("llama", len(tok))
    cfg.rope_parameters = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    model, _, _ = _native(_save(hf, tok, tmp_path / "linear"))
    ours, theirs = get_adapter(model), get_adapter(hf)
    for a, b in zip(ours.blocks, theirs.blocks, strict=True):
        assert a.attn.rope is not None and b.attn.rope is not None
        assert torch.equal(a.attn.rope.inv_freq, b.attn.rope.inv_freq)
    default = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float) / 16))
    assert torch.allclose(ours.blocks[0].attn.rope.inv_freq, default / 4.0)


def test_what_needs_transformers_returns_none(folders, tmp_path):
    src, _ = folders["llama"]

    def copy(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for f in src.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        return folder

    llama3 = copy("llama3")
    _rewrite_config(
        llama3,
        lambda c: c.update(
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        ),
    )
    multimodal = copy("multimodal")
    _rewrite_config(multimodal, lambda c: c.update(model_type="gemma3", text_config={"model_type": "gemma3_text"}))
    no_tokenizer = copy("no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    act = copy("activation")
    _rewrite_config(act, lambda c: c.update(hidden_act="relu2"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    for ref in (llama3, multimodal, no_tokenizer, act, gguf, "some/hub-id"):
        assert load_native(ref, device=CPU, dtype=torch.float32) is None, ref


def test_cli_trace_does_not_import_transformers(tmp_path):
    """... and starts the tokenizer's helper process before it imports torch, then reads its ids through it."""
    model_dir, tc_dir = build_tiny_checkpoint(tmp_path, "qwen3")
    out = tmp_path / "g.json"
    code = (
        "import sys; from circuitboard.cli import main; from circuitboard.engine import file_tokenizer as ft; "
        "seen = []; start = ft.start_tokenizer; "
        "ft.start_tokenizer = lambda f: (seen.append('torch' in sys.modules), start(f))[1]; "
        "made = []; init = ft.RemoteTokenizer.__init__; "
        "ft.RemoteTokenizer.__init__ = lambda self, *a: (made.append(1), init(self, *a))[1]; "
        f"main(['trace', 'The opposite of hot is', '--model', {str(model_dir)!r}, '--transcoders', {str(tc_dir)!r}, "
        f"'--max-feature-nodes', '20', '--out', {str(out)!r}]); "
        "print(seen, made, sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert res.stdout.strip().splitlines()[-1] == "[False] [1] []"
    graph = json.loads(out.read_text())
    assert graph["nodes"]
    ref = AutoTokenizer.from_pretrained(model_dir)
    assert graph["metadata"]["prompt_tokens"] == [ref.decode([i]) for i in ref("The opposite of hot is").input_ids]


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "qwen2"])
def test_tokenizer_process_is_the_file_tokenizer(folders, arch):
    folder, _ = folders[arch]
    here = FileTokenizer(folder, model_type_of(folder))
    pending = start_tokenizer(folder)
    assert pending is not None
    remote = pending.result()
    assert isinstance(remote, RemoteTokenizer)
    try:
        for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id", "all_special_ids"):
            assert getattr(remote, key) == getattr(here, key), key
        assert len(remote) == len(here)
        for text in TEXTS:
            for special in (True, False):
                ids = here(text, add_special_tokens=special).input_ids
                assert remote(text, add_special_tokens=special).input_ids == ids
                assert remote.decode(ids) == here.decode(ids)
                assert [remote.decode([i]) for i in ids] == [here.decode([i]) for i in ids]
        # A call the library refuses fails alone, with its message; the next one is answered.
        with pytest.raises(ValueError, match="tokenizer: "):
            remote.decode([-1])
        assert remote(TEXTS[0]).input_ids == here(TEXTS[0]).input_ids
    finally:
        remote.close()
    assert remote._proc.returncode == 0
    with pytest.raises(RuntimeError, match="tokenizer process ended"):
        remote(TEXTS[0])


def test_tokenizer_process_gives_way(folders, tmp_path):
    """Where the helper cannot load the tokenizer, the caller loads it itself: transformers' class rules
    (Qwen 2), a broken file (the library's own error, raised in this process), a model that needs transformers."""
    qwen2, _ = folders["qwen2"]
    pending = start_tokenizer(qwen2)
    assert pending is not None and pending.result() is None
    _, tok, _ = load_native(qwen2, device=CPU, dtype=torch.float32, tokenizer=start_tokenizer(qwen2))
    assert not isinstance(tok, (FileTokenizer, RemoteTokenizer))

    src, _ = folders["llama"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in src.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(Exception, match="EOF|expected"):
        load_native(broken, device=CPU, dtype=torch.float32, tokenizer=start_tokenizer(broken))

    act = tmp_path / "act"
    act.mkdir()
    for f in src.iterdir():
        (act / f.name).write_bytes(f.read_bytes())
    _rewrite_config(act, lambda c: c.update(hidden_act="relu2"))
    pending = start_tokenizer(act)
    assert pending is not None
    assert load_native(act, device=CPU, dtype=torch.float32, tokenizer=pending) is None
    assert pending._proc.poll() is not None  # stopped, not left running
    assert start_tokenizer(tmp_path / "missing") is None


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
def test_native_weights_on_the_chosen_device(folders, arch):
    """Every tensor of a natively loaded model, rotary tables included, is where the engine asked (GPU
    readiness: `meta` stands in for CUDA, where a CPU tensor would fail the first mixed operation)."""
    folder, _ = folders[arch]
    loaded = load_native(folder, device=torch.device("meta"), dtype=torch.float32)
    assert loaded is not None
    model = loaded[0]
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
    for block in get_adapter(model).blocks:
        assert block.attn.rope is None or block.attn.rope.inv_freq.device.type == "meta"
