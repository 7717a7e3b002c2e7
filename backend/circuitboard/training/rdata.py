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

    def int(self) -> int:
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self) -> None:
        if self.b[:2] != b"X\n":
            raise ValueError("only XDR-format R serialisation is supported")
        self.i = 2
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader version
        if version == 3:
            n = self.int()
            self.i += n  # native encoding name

    def item(self) -> object:
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if t in SPECIAL_NO_PAYLOAD:
            return None
        if t == REFSXP:
            idx = flags >> 8 or self.int()
            return self.refs[idx - 1]
        if t in (247, 248):  # package / namespace: a string vector
            self.int()
            vals = [self.item() for _ in range(self.int())]
            self.refs.append(vals)
            return vals
        if t == 1:  # SYMSXP
            sym = self.item()
            self.refs.append(sym)
            return sym
        if t in (2, 6, 17, 5):  # pairlist-like: attr?, tag?, car, cdr
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            out = [(tag, car)]
            if isinstance(cdr, list) and cdr and isinstance(cdr[0], tuple):
                out.extend(cdr)
            del attr
            return out
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.i : self.i + n].decode("utf-8", "replace")
            self.i += n
            return s
        if t in (10, 13):
            n = self.length()
            vals = list(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
        elif t == 14:
            n = self.length()
            vals = list(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
        elif t in (16, 19, 20):
            vals = [self.item() for _ in range(self.length())]
        elif t == 4:  # environment
            env: dict = {}
            self.refs.append(env)
            self.int()
            self.item()
            self.item()
            self.item()
            self.item()
            return env
        else:
            raise ValueError(f"unsupported R SEXP type {t}")
        if has_attr:
            attrs = self.item()
            if t == 19 and isinstance(attrs, list):
                names = dict(attrs).get("names")
                if names:
                    return dict(zip(names, vals, strict=False))
        return vals


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
    index = unserialize(
        gzip.decompress(rdx.read_bytes())
        if rdx.read_bytes()[:2] == b"\x1f\x8b"
        else _decompress_chunk(rdx.read_bytes())
    )
    variables = index["variables"] if isinstance(index, dict) else dict(index)["variables"]
    rdb = rdx.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in variables.items():
        out[name] = unserialize(_decompress_chunk(rdb[offset : offset + length]))
    return out
