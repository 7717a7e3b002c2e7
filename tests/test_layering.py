"""The import rules of docs/architecture.md ("Layering"), checked by scripts/check_layering.py over the AST.

The checker is tested on small made-up packages first, so that a rule it silently stopped enforcing shows."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_layering", ROOT / "scripts" / "check_layering.py")
assert _spec and _spec.loader
layering = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layering)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "circuitboard"
    for rel, text in {"__init__.py": "", **files}.items():
        f = pkg / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        for parent in f.relative_to(pkg).parents:
            init = pkg / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        f.write_text(textwrap.dedent(text))
    return pkg


def test_the_repository_follows_the_rules():
    problems = layering.check(ROOT / "backend" / "circuitboard")
    assert problems == []


def test_downward_imports_pass(tmp_path):
    pkg = _tree(
        tmp_path,
        {
            "ranges.py": "",
            "config.py": "from circuitboard.ranges import r\n",
            "engine/a.py": "from circuitboard.ranges import x\nfrom circuitboard.engine import b\n",
            "engine/b.py": "import torch\n",
            "api/routes.py": "from circuitboard.jobs.queue import Q\nfrom circuitboard.engine.a import y\n",
            "jobs/queue.py": "from circuitboard.store import s\n",
            "store/s.py": "",
            "presets.py": "from circuitboard.engine.a import y\n",
            "cli/run.py": "from circuitboard.presets import p\nfrom circuitboard import __version__\n",
        },
    )
    assert layering.check(pkg) == []


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"store/a.py": "from circuitboard.api.app import create_app\n", "api/app.py": ""}, "may not import 'api'"),
        (  # inside a function
            {"store/s.py": "def f():\n    from circuitboard.jobs import q\n", "jobs/q.py": ""},
            "may not import 'jobs'",
        ),
        (  # typing-only imports count too
            {
                "store/a.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from circuitboard.jobs import q\n",
                "jobs/q.py": "",
            },
            "may not import 'jobs'",
        ),
        ({"atlas/b.py": "from circuitboard.training.t import f\n", "training/t.py": ""}, "may not import 'training'"),
        ({"training/t.py": "import circuitboard.atlas.b\n", "atlas/b.py": ""}, "may not import 'atlas'"),
        (  # presets floats above the engine, so the engine may not use it
            {
                "engine/a.py": "from circuitboard.presets import p\n",
                "presets.py": "from circuitboard.engine import b\n",
            },
            "the engine imports only",
        ),
        ({"engine/a.py": "from circuitboard import devtools\n", "devtools/tiny.py": ""}, "the engine imports only"),
        # nor the server's settings: `circuitboard trace` imports the engine without pydantic-settings
        ({"engine/a.py": "from circuitboard.config import Settings\n", "config.py": ""}, "the engine imports only"),
        ({"ranges.py": "from circuitboard.config import Settings\n", "config.py": ""}, "may not import 'config'"),
        ({"jobs/a.py": "from circuitboard.jobs.b import x\n", "jobs/b.py": "from . import a\n"}, "module import cycle"),
        ({"newthing/a.py": "from circuitboard.config import x\n", "config.py": ""}, "has no layer"),
    ],
)
def test_each_rule_can_fail(tmp_path, files, expected):
    problems = layering.check(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_package_cycle_is_found():
    graph = {
        "circuitboard.a.x": {"circuitboard.b.y"},
        "circuitboard.b.y": set(),
        "circuitboard.b.z": {"circuitboard.a.w"},
    }
    graph["circuitboard.a.w"] = set()
    assert layering.cycles(layering.package_graph(graph)) == [["a", "b"]]
    assert layering.cycles(graph) == []
