"""English text corpus for the activation cache (`circuitboard corpus build`).

Documents come from pinned registry packages (`corpus_sources`), a folder of local text files, or a Hugging
Face dataset when online; they are cleaned, cut into passages, de-duplicated and split into train / held-out.

Output folder (default `data/corpus/default/`): `train.jsonl`, `heldout.jsonl` (one `{"text", "source"}`
passage per line, shuffled with a fixed seed so any prefix is a fair mix of sources) and `manifest.json`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from circuitboard.config import REPO_ROOT
from circuitboard.data.corpus_sources import (
    DOWNLOADS_DIR,
    EXTRACTORS,
    SOURCES,
    Source,
    extract_hf_dataset,
    extract_local,
    fetch,
)

DEFAULT_CORPUS_DIR = REPO_ROOT / "data" / "corpus" / "default"
MAX_PASSAGE_CHARS = 2400  # ≈ 600 tokens: long documents become several passages so the mix stays fine-grained
MIN_PASSAGE_CHARS = 80
Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- cleaning

_WS = re.compile(r"[ \t\u00a0]+")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CTRL.sub("", text)
    lines = [_WS.sub(" ", ln).rstrip() for ln in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def passages(text: str, max_chars: int = MAX_PASSAGE_CHARS) -> Iterator[str]:
    """Split a document at paragraph (then sentence) boundaries into passages of at most max_chars."""
    buf = ""
    for para in text.split("\n\n"):
        pieces = [para] if len(para) <= max_chars else _SENT.split(para)
        for piece in pieces:
            while len(piece) > max_chars:  # a run-on "sentence": cut hard
                if buf:
                    yield buf
                    buf = ""
                yield piece[:max_chars]
                piece = piece[max_chars:]
            sep = "\n\n" if piece is para else " "
            if buf and len(buf) + len(sep) + len(piece) > max_chars:
                yield buf
                buf = ""
            buf = f"{buf}{sep}{piece}" if buf else piece
    if buf:
        yield buf


def _key(p: str) -> str:
    return hashlib.sha1(re.sub(r"\W+", " ", p.lower()).strip().encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- build


def build_corpus(
    out_dir: Path = DEFAULT_CORPUS_DIR,
    *,
    sources: Iterable[Source] | None = None,
    local_dir: Path | None = None,
    hf_dataset: str | None = None,
    heldout_fraction: float = 0.02,
    seed: int = 0,
    downloads: Path = DOWNLOADS_DIR,
    force: bool = False,
    log: Log = print,
) -> dict:
    """Build (or reuse) a corpus folder. With `local_dir` or `hf_dataset` the registry sources are skipped."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists() and not force:
        return json.loads(manifest_path.read_text())
    t0 = time.perf_counter()
    docs, records = _documents(sources, local_dir, hf_dataset, downloads, log)
    items, stats = _unique_passages(docs, records, log)
    random.Random(seed).shuffle(items)
    counts, digests = _write_splits(out_dir, items, heldout_fraction)
    total_chars = sum(s["chars"] for s in stats.values())
    manifest = {
        "name": out_dir.name,
        "sources": records,
        "passages": counts,
        "chars": total_chars,
        "approx_tokens": total_chars // 4,
        "sha256": digests,
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log(
        f"corpus: {counts['train']} train / {counts['heldout']} held-out passages, "
        f"≈{total_chars / 4e6:.1f}M tokens, in {manifest['build_seconds']} s -> {out_dir}"
    )
    return manifest


def _documents(
    sources: Iterable[Source] | None, local_dir: Path | None, hf_dataset: str | None, downloads: Path, log: Log
) -> tuple[list[tuple[str, Iterable[str]]], list[dict]]:
    """(source name, its documents) per source, and each source's manifest record."""
    if local_dir is not None:
        return [("local", extract_local(Path(local_dir)))], [{"name": "local", "path": str(local_dir)}]
    if hf_dataset is not None:
        return [("hf", extract_hf_dataset(hf_dataset))], [{"name": "hf", "dataset": hf_dataset}]
    docs: list[tuple[str, Iterable[str]]] = []
    records: list[dict] = []
    for src in sources if sources is not None else SOURCES:
        path, digest = fetch(src, downloads, log=log)
        docs.append((src.name, EXTRACTORS[src.extract](path)))
        records.append({**asdict(src), "file": path.name, "sha256": digest, "verified": path.name == src.filename})
    return docs, records


def _unique_passages(
    docs: list[tuple[str, Iterable[str]]], records: list[dict], log: Log
) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """(source, passage) for every cleaned passage long enough and not seen before; per-source counts (also
    added to the source's record)."""
    seen: set[str] = set()
    items: list[tuple[str, str]] = []
    stats: dict[str, dict] = {}
    for (name, it), rec in zip(docs, records, strict=True):
        n_docs = n_pass = n_dup = chars = 0
        for doc in it:
            n_docs += 1
            for p in passages(clean(doc)):
                if len(p) < MIN_PASSAGE_CHARS:
                    continue
                k = _key(p)
                if k in seen:
                    n_dup += 1
                    continue
                seen.add(k)
                items.append((name, p))
                n_pass += 1
                chars += len(p)
        stats[name] = {
            "documents": n_docs,
            "passages": n_pass,
            "duplicates_dropped": n_dup,
            "chars": chars,
            "approx_tokens": chars // 4,
        }
        rec.update(stats[name])
        log(f"  {name}: {n_docs} documents, {n_pass} passages, {chars / 1e6:.1f}M chars")
    return items, stats


def _write_splits(
    out_dir: Path, items: list[tuple[str, str]], heldout_fraction: float
) -> tuple[dict[str, int], dict[str, str]]:
    """train.jsonl and heldout.jsonl (written to .tmp, then renamed); passage counts and sha256 per split."""
    # held-out membership by content hash: stable when sources are added or the seed changes
    thr = int(heldout_fraction * 2**32)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "heldout": 0}
    digests = {}
    for split in ("train", "heldout"):
        h = hashlib.sha256()
        tmp = out_dir / f"{split}.jsonl.tmp"
        with tmp.open("w") as f:
            for name, p in items:
                is_held = int(_key(p)[:8], 16) < thr
                if is_held == (split == "heldout"):
                    line = json.dumps({"text": p, "source": name}, ensure_ascii=False) + "\n"
                    f.write(line)
                    h.update(line.encode())
                    counts[split] += 1
        tmp.rename(out_dir / f"{split}.jsonl")
        digests[split] = h.hexdigest()
    return counts, digests


def iter_passages(corpus_dir: Path, split: str) -> Iterator[dict]:
    with (Path(corpus_dir) / f"{split}.jsonl").open() as f:
        for line in f:
            yield json.loads(line)
