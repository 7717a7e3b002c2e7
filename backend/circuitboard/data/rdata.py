"""Read character vectors out of an R package's lazy-load database (`data/Rdata.rdx` + `Rdata.rdb`).

Only what the corpus needs (janeaustenr's novels are character vectors), so R itself is not required.
Format: R's XDR serialisation (versions 2 and 3), see R's `serialize.c`.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path

NILVALUE, REFSXP, GLOBALENV, EMPTYENV, BASEENV, BASENAMESPACE = 254, 255, 253, 242, 241, 247
SPECIAL_NO_PAYLOAD = {254, 253, 252, 251, 250, 249, 242, 241, 246}


class _Reader:
    def __init__(self, data: bytes):
        self.b = data
        self.i = 0
        self.refs: list[object] = []

    def i32(self) -> int:
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def length(self) -> int:
        n = self.i32()
        if n == -1:  # long vector: two more ints
            hi, lo = self.i32(), self.i32()
            n = (hi << 32) + lo
        return n

    def header(self) -> None:
        if self.b[:2] != b"X\n":
            raise ValueError("only XDR-format R serialisation is supported")
        self.i = 2
        version = self.i32()
        self.i32()  # writer R version
        self.i32()  # minimal reader version
        if version == 3:
            n = self.i32()
            self.i += n  # native encoding name

    def item(self) -> object:
        flags = self.i32()
        t = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if t in SPECIAL_NO_PAYLOAD:
            return None
        if t == REFSXP:
            idx = flags >> 8 or self.i32()
            return self.refs[idx - 1]
        if t in (247, 248):  # package / namespace: a string vector
            self.i32()
            vals = [self.item() for _ in range(self.i32())]
            self.refs.append(vals)
            return vals
        if t == 1:  # SYMSXP
            sym = self.item()
            self.refs.append(sym)
            return sym
        if t in (2, 6, 17, 5):
            return self._pairlist(has_attr, has_tag)
        if t == 9:
            return self._charsxp()
        if t == 4:
            return self._environment()
        vals = self._vector(t)
        if has_attr:
            attrs = self.item()
            if t == 19 and isinstance(attrs, list):
                names = dict(attrs).get("names")
                if names:
                    return dict(zip(names, vals, strict=False))
        return vals

    def _pairlist(self, has_attr: bool, has_tag: bool) -> list[tuple[object, object]]:
        """attr?, tag?, car, cdr -> [(tag, car), ...] (the cdr's entries appended)."""
        if has_attr:
            self.item()
        tag = self.item() if has_tag else None
        car = self.item()
        cdr = self.item()
        out = [(tag, car)]
        if isinstance(cdr, list) and cdr and isinstance(cdr[0], tuple):
            out.extend(cdr)
        return out

    def _charsxp(self) -> str | None:
        n = self.i32()
        if n == -1:
            return None
        s = self.b[self.i : self.i + n].decode("utf-8", "replace")
        self.i += n
        return s

    def _environment(self) -> dict:
        env: dict = {}
        self.refs.append(env)
        self.i32()
        for _ in range(4):  # enclosure, frame, hash table, attributes: not needed
            self.item()
        return env

    def _vector(self, t: int) -> list:
        if t in (10, 13):  # logical, integer
            n = self.length()
            vals = list(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
            return vals
        if t == 14:  # double
            n = self.length()
            dvals = list(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
            return dvals
        if t in (16, 19, 20):  # character, list, expression
            return [self.item() for _ in range(self.length())]
        raise ValueError(f"unsupported R SEXP type {t}")


def unserialize(data: bytes) -> object:
    r = _Reader(data)
    r.header()
    return r.item()


def _decompress_chunk(chunk: bytes) -> bytes:
    # lazy-load chunks: 4-byte big-endian length, then a type byte for bzip2/xz, else a zlib stream
    body = chunk[4:]
    if body[:1] == b"2":
        return bz2.decompress(body[1:])
    if body[:1] == b"Z":
        return lzma.decompress(body[1:])
    if body[:1] == b"0":
        return body[1:]
    return zlib.decompress(body)


def read_lazyload_db(rdx: Path) -> dict[str, object]:
    """All variables of an R lazy-load database, by name."""
    raw = rdx.read_bytes()
    index = unserialize(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else _decompress_chunk(raw))
    if isinstance(index, list):  # a pairlist of (tag, value)
        index = dict(index)
    variables = index.get("variables") if isinstance(index, dict) else None
    if not isinstance(variables, dict):
        raise ValueError(f"{rdx} is not an R lazy-load index (no `variables`)")
    rdb = rdx.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in variables.items():
        out[name] = unserialize(_decompress_chunk(rdb[offset : offset + length]))
    return out
