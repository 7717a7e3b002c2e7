"""`circuitboard atlas build | search | export` with explicit paths (no preset needed)."""

from __future__ import annotations

import torch

from circuitboard.cli import main


def test_cli_build_search_export(tiny_world, tmp_path, capsys):
    out = tmp_path / "atlas.sqlite"
    where = [
        "--model",
        str(tiny_world.model_dir),
        "--transcoders",
        str(tiny_world.sets["topk"]),
        "--cache",
        str(tiny_world.cache_dir),
        "--atlas",
        str(out),
    ]
    try:
        assert main(["atlas", "build", *where, "--quiet", "--threads", "1", "--max-tokens", "1000"]) == 0
    finally:
        torch.set_num_threads(1)
    text = capsys.readouterr().out
    assert "48 features" not in text and "96 features" in text and "tokens/s" in text
    assert main(["atlas", "build", *where, "--quiet", "--threads", "1"]) == 0  # more tokens: a rebuild
    assert "built layers [0, 1]" in capsys.readouterr().out
    assert main(["atlas", "build", *where, "--quiet", "--threads", "1"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["atlas", "search", *where, "dallas"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("L1/5\t") and 'on "dallas"' in first
    assert main(["atlas", "export", *where, "--to", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "features" / "index.json.gz").is_file()


def test_build_atlas_by_keyword_as_prepare_calls_it(tiny_world, tmp_path):
    """cli/prepare.py `prepare` passes arguments by name (model_dir, transcoders_dir, cache_dir, out_path)."""
    from circuitboard.atlas.build import build_atlas

    res = build_atlas(
        model_dir=tiny_world.model_dir,
        transcoders_dir=tiny_world.sets["relu"],
        cache_dir=tiny_world.cache_dir,
        out_path=tmp_path / "atlas.sqlite",
        progress=False,
    )
    assert res.layers_built == [0, 1]
