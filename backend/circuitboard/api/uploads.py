"""Reading a size-capped upload (multipart field `file` or the raw body) and parsing the JSON document in it."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from circuitboard.api.errors import field_error
from circuitboard.api.schemas import lone_surrogate_path

# Room for the multipart boundaries and part headers around the file itself.
_MULTIPART_SLACK = 64 * 1024


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"file: larger than the upload limit of {limit} bytes ({limit / 1e6:.0f} MB)")


async def read_capped(request: Request, cap: int, limit: int) -> bytes:
    """The body, refused (413, naming `limit`) as soon as it is known to exceed `cap` bytes: from
    Content-Length before reading anything, else while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request, limit: int, field: str = "file") -> bytes:
    """The uploaded document's bytes, from multipart field `field` or from the body itself."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raw = await read_capped(request, limit, limit)
    else:
        raw = await _multipart_file(request, limit, field)
    if not raw.strip():
        raise field_error(("body", field), f"{field}: empty upload")
    return raw


async def _multipart_file(request: Request, limit: int, field: str) -> bytes:
    body = await read_capped(request, limit + _MULTIPART_SLACK, limit)

    async def stream():
        yield body
        yield b""

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as e:
        raise field_error(("body", field), f"{field}: malformed multipart upload ({e.message})") from None
    upload = form.get(field)
    if isinstance(upload, UploadFile):
        raw = await upload.read()
    elif isinstance(upload, str):  # pasted into a plain form field rather than attached as a file
        raw = upload.encode()
    else:
        raise field_error(("body", field), f"{field}: missing; send the graph JSON as the multipart file '{field}'")
    await form.close()
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


# ------------------------------------------------------------------------------------------- JSON documents
# An upload is parsed by us, not by FastAPI, so each way a file can be bad is a 4xx naming the file: NaN and
# Infinity (which Python's json accepts), numbers past float range (`1e400`), nesting deep enough to exhaust the
# parser's recursion, and text that is not valid Unicode.

MAX_DEPTH = 64  # a graph file nests 4 deep; the rest is room for the extra fields other writers add
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _BadNumber(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a number JSON allows")


def parse_json_document(raw: bytes, field: str = "file") -> Any:
    """The JSON document in `raw`, or a 422 naming `field` (and, where known, the path inside it)."""
    try:
        text = raw.decode("utf-8-sig")
        data = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except _BadNumber as e:
        raise field_error(("body", field), f"{field}: {e}") from None
    except UnicodeDecodeError as e:
        raise field_error(("body", field), f"{field}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise field_error(("body", field), f"{field}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise field_error(("body", field), f"{field}: not valid JSON ({e})") from None
    _check_depth(data, field)
    if _SURROGATE_ESCAPE.search(raw):  # rare: only then is the walk for a lone surrogate worth it
        where = lone_surrogate_path(data)
        if where is not None:
            loc = ("body", field, *where.split("."))
            raise field_error(loc, f"{field}.{where}: text must be valid Unicode (a lone surrogate)")
    return data


def _check_depth(data: Any, field: str) -> None:
    """Iteratively, so that the check itself cannot run out of stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise field_error(("body", field), f"{field}: nested deeper than {MAX_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
