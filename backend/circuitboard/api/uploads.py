"""Reading a size-capped upload: multipart (field `file`) or a raw JSON body."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from circuitboard.api.errors import field_error

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


async def read_json_upload(request: Request, limit: int, field: str = "file") -> Any:
    """The uploaded JSON document, from multipart field `field` or from the body itself."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
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
    else:
        raw = await read_capped(request, limit, limit)
    if not raw.strip():
        raise field_error(("body", field), f"{field}: empty upload")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise field_error(("body", field), f"{field}: not valid JSON ({e})") from None
