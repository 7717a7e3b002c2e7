"""The atlas on disk: one SQLite file next to the transcoders (models/<preset>/atlas.sqlite).

Plain sqlite3 (no ORM): the build writes ~70k rows in a few bulk transactions and the API reads one row at a
time. Examples are packed into compact zlib blobs (token ids live once per sequence in `sequences`, text once
per token id in `vocab`), so the file stays small. User label overrides and LLM explanations live in their
own tables and survive a rebuild.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (layer INTEGER PRIMARY KEY, n_features INTEGER NOT NULL,
                                   seconds REAL NOT NULL, finished_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    layer INTEGER NOT NULL, idx INTEGER NOT NULL,
    max_act REAL NOT NULL, mean_act REAL NOT NULL, frequency REAL NOT NULL, n_active INTEGER NOT NULL,
    hist TEXT NOT NULL,          -- {"hi": float, "counts": [int]}: equal bins over [0, hi]
    logits TEXT NOT NULL,        -- {"top": [[id, value]], "bottom": [[id, value]]}
    inputs TEXT NOT NULL,        -- [[id, sum_act, count]]
    examples BLOB NOT NULL,      -- pack_examples()
    auto_label TEXT NOT NULL,
    PRIMARY KEY (layer, idx));   -- a rowid table: WITHOUT ROWID wastes ~2/3 of each page on ~1.5 kB rows
-- narrow copy for LIKE scans (searching 70k features reads ~25 MB here instead of the whole atlas)
CREATE TABLE IF NOT EXISTS search (layer INTEGER NOT NULL, idx INTEGER NOT NULL, max_act REAL NOT NULL,
                                   frequency REAL NOT NULL, auto_label TEXT NOT NULL,
                                   text TEXT NOT NULL,  -- lower-cased label / input tokens / outputs / snippets
                                   PRIMARY KEY (layer, idx));
CREATE TABLE IF NOT EXISTS sequences (seq INTEGER PRIMARY KEY, tokens BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_labels (layer INTEGER NOT NULL, idx INTEGER NOT NULL, label TEXT NOT NULL,
                                        updated_at REAL NOT NULL, PRIMARY KEY (layer, idx));
CREATE TABLE IF NOT EXISTS explanations (layer INTEGER NOT NULL, idx INTEGER NOT NULL, model TEXT NOT NULL,
                                         text TEXT NOT NULL, created_at REAL NOT NULL,
                                         PRIMARY KEY (layer, idx, model));
"""

# ---------------------------------------------------------------------------------------------------------
# Example blobs
# ---------------------------------------------------------------------------------------------------------

_HEADER = np.dtype([("n", "<i4"), ("w", "<i4")])


@dataclass
class Examples:
    """Examples of one feature: group 0 = top activations, group g>0 = quantile band g."""

    group: np.ndarray  # int8 [n]
    seq: np.ndarray  # int32 [n]
    pos: np.ndarray  # int32 [n] position of the activating token in its sequence
    acts: np.ndarray  # float16 [n, w] activations over the window (zero-padded past its end)


def pack_examples(group: np.ndarray, seq: np.ndarray, pos: np.ndarray, acts: np.ndarray) -> bytes:
    n, w = acts.shape if acts.ndim == 2 else (0, 0)
    head = np.array([(n, w)], dtype=_HEADER).tobytes()
    body = (
        group.astype("<i1").tobytes()
        + seq.astype("<i4").tobytes()
        + pos.astype("<i4").tobytes()
        + acts.astype("<f2").tobytes()
    )
    return zlib.compress(head + body, 6)


def unpack_examples(blob: bytes) -> Examples:
    raw = zlib.decompress(blob)
    head = np.frombuffer(raw[:8], dtype=_HEADER)[0]
    n, w = int(head["n"]), int(head["w"])
    off = 8
    group = np.frombuffer(raw, "<i1", n, off)
    off += n
    seq = np.frombuffer(raw, "<i4", n, off)
    off += 4 * n
    pos = np.frombuffer(raw, "<i4", n, off)
    off += 4 * n
    acts = np.frombuffer(raw, "<f2", n * w, off).reshape(n, w)
    return Examples(group, seq, pos, acts)


# ---------------------------------------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------------------------------------


class AtlasStore:
    """Thread-safe enough for the API: each call opens a short-lived connection (WAL lets reads run during
    a build)."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no feature atlas at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.build_hash: str | None = None
        self._seq_cache: dict[int, np.ndarray] = {}
        self._vocab_cache: dict[int, str] = {}
        with self.connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if create and row is not None and json.loads(row[0]) != SCHEMA_VERSION:
                # computed tables are rebuilt from the cache anyway; user labels and explanations are kept
                for table in ("layers", "features", "search", "sequences", "vocab"):
                    con.execute(f"DROP TABLE IF EXISTS {table}")
                con.execute("DELETE FROM meta WHERE key='build_hash'")
            con.executescript(_SCHEMA)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction on a short-lived connection (committed on success, always closed)."""
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            with con:
                yield con
        finally:
            con.close()

    @staticmethod
    def peek_build_hash(path: str | Path) -> str | None:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='build_hash'").fetchone()
        except sqlite3.Error:
            row = None
        finally:
            con.close()
        return json.loads(row[0]) if row else None

    # -- meta ------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        with self.connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- build side ------------------------------------------------------------------------------------
    def done_layers(self) -> set[int]:
        with self.connect() as con:
            return {r[0] for r in con.execute("SELECT layer FROM layers")}

    def reset_build(self) -> None:
        """Drop computed data (not user labels or explanations) before a fresh build."""
        with self.connect() as con:
            for table in ("layers", "features", "search", "sequences", "vocab"):
                con.execute(f"DELETE FROM {table}")
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("VACUUM")  # give the freed pages back now, while little data is left (fast)
        finally:
            con.close()
        self._seq_cache.clear()
        self._vocab_cache.clear()

    def put_sequences(self, tokens: np.ndarray) -> None:
        rows = ((i, tokens[i].astype("<i4").tobytes()) for i in range(tokens.shape[0]))
        with self.connect() as con:
            con.executemany("INSERT OR REPLACE INTO sequences VALUES (?, ?)", rows)

    def put_vocab(self, items: dict[int, str]) -> None:
        with self.connect() as con:
            con.executemany("INSERT OR REPLACE INTO vocab VALUES (?, ?)", items.items())
        self._vocab_cache.clear()

    def put_layer(self, layer: int, rows: list[tuple], search_rows: list[tuple], seconds: float) -> None:
        """All of one layer's features plus its done-marker in one transaction: a crash never leaves half a
        layer marked done, so resume can trust the `layers` table."""
        with self.connect() as con:
            con.execute("DELETE FROM features WHERE layer=?", (layer,))
            con.execute("DELETE FROM search WHERE layer=?", (layer,))
            con.executemany("INSERT INTO features VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            con.executemany("INSERT INTO search VALUES (?,?,?,?,?,?)", search_rows)
            con.execute("INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?)", (layer, len(rows), seconds, time.time()))

    # -- read side -------------------------------------------------------------------------------------
    def vocab_text(self, ids) -> list[str]:
        ids = [int(i) for i in ids]
        missing = [i for i in set(ids) if i not in self._vocab_cache]
        if missing:
            with self.connect() as con:
                for start in range(0, len(missing), 900):
                    part = missing[start : start + 900]
                    q = f"SELECT id, text FROM vocab WHERE id IN ({','.join('?' * len(part))})"
                    found = dict(con.execute(q, part).fetchall())
                    with self._lock:
                        self._vocab_cache.update(found)
        return [self._vocab_cache.get(i, f"<{i}>") for i in ids]

    def sequence(self, seq: int) -> np.ndarray:
        arr = self._seq_cache.get(seq)
        if arr is None:
            with self.connect() as con:
                row = con.execute("SELECT tokens FROM sequences WHERE seq=?", (int(seq),)).fetchone()
            arr = np.frombuffer(row[0], "<i4") if row else np.zeros(0, "<i4")
            with self._lock:
                if len(self._seq_cache) > 4096:  # bounded: the API process lives long
                    self._seq_cache.clear()
                self._seq_cache[seq] = arr
        return arr

    def raw_feature(self, layer: int, idx: int) -> dict | None:
        with self.connect() as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM features WHERE layer=? AND idx=?", (layer, idx)).fetchone()
            if row is None:
                return None
            out = dict(row)
            lab = con.execute("SELECT label FROM user_labels WHERE layer=? AND idx=?", (layer, idx)).fetchone()
            out["user_label"] = lab[0] if lab else None
            exp = con.execute(
                "SELECT text, model FROM explanations WHERE layer=? AND idx=? ORDER BY created_at DESC LIMIT 1",
                (layer, idx),
            ).fetchone()
            out["explanation"] = exp[0] if exp else None
            out["explanation_model"] = exp[1] if exp else None
        return out

    def iter_layer(self, layer: int) -> Iterator[dict]:
        """Raw rows of one layer in index order (with user labels / explanations), for export."""
        labels = {k[1]: v for k, v in self.user_labels().items() if k[0] == layer}
        with self.connect() as con:
            con.row_factory = sqlite3.Row
            exps = dict(
                con.execute("SELECT idx, text FROM explanations WHERE layer=? ORDER BY created_at", (layer,)).fetchall()
            )
            for row in con.execute("SELECT * FROM features WHERE layer=? ORDER BY idx", (layer,)):
                out = dict(row)
                out["user_label"] = labels.get(out["idx"])
                out["explanation"] = exps.get(out["idx"])
                out["explanation_model"] = None
                yield out

    def n_features(self) -> int:
        with self.connect() as con:
            return con.execute("SELECT COUNT(*) FROM features").fetchone()[0]

    def layer_sizes(self) -> dict[int, int]:
        with self.connect() as con:
            return dict(con.execute("SELECT layer, n_features FROM layers ORDER BY layer").fetchall())

    # -- labels and explanations -----------------------------------------------------------------------
    def set_user_label(self, layer: int, idx: int, label: str | None) -> None:
        with self._lock, self.connect() as con:
            if label is None or not label.strip():
                con.execute("DELETE FROM user_labels WHERE layer=? AND idx=?", (layer, idx))
            else:
                con.execute(
                    "INSERT OR REPLACE INTO user_labels VALUES (?, ?, ?, ?)", (layer, idx, label.strip(), time.time())
                )

    def labels_for(self, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """Current labels (user override, else automatic) of many features at once; unknown ones omitted."""
        q = (
            "SELECT f.idx, COALESCE(u.label, f.auto_label) FROM features f LEFT JOIN user_labels u "
            "ON u.layer = f.layer AND u.idx = f.idx WHERE f.layer = ? AND f.idx IN ({marks})"
        )
        return {k: str(v) for k, v in self._per_feature(q, pairs).items()}

    def frequencies_for(self, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """Activation frequencies of many features, from the narrow `search` table; unknown ones omitted."""
        q = "SELECT idx, frequency FROM search WHERE layer = ? AND idx IN ({marks})"
        return {k: float(v) for k, v in self._per_feature(q, pairs).items()}

    def _per_feature(self, query: str, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        """Run `query` (selecting idx and one value, for one layer and `{marks}` ids) per layer, in chunks of
        900 ids (SQLite's limit on bound variables is 999)."""
        by_layer: dict[int, list[int]] = {}
        for layer, idx in pairs:
            by_layer.setdefault(int(layer), []).append(int(idx))
        out: dict[tuple[int, int], Any] = {}
        with self.connect() as con:
            for layer, idxs in by_layer.items():
                for start in range(0, len(idxs), 900):
                    part = idxs[start : start + 900]
                    sql = query.format(marks=",".join("?" * len(part)))
                    out.update(((layer, i), value) for i, value in con.execute(sql, [layer, *part]))
        return out

    def user_labels(self) -> dict[tuple[int, int], str]:
        with self.connect() as con:
            return {(r[0], r[1]): r[2] for r in con.execute("SELECT layer, idx, label FROM user_labels")}

    def get_explanation(self, layer: int, idx: int, model: str) -> str | None:
        with self.connect() as con:
            row = con.execute(
                "SELECT text FROM explanations WHERE layer=? AND idx=? AND model=?", (layer, idx, model)
            ).fetchone()
        return row[0] if row else None

    def put_explanation(self, layer: int, idx: int, model: str, text: str) -> None:
        with self._lock, self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?)", (layer, idx, model, text, time.time())
            )
