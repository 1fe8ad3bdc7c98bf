"""Uploaded images: checked with Pillow, size-limited, fully decoded once, stored under ``DATA_DIR/inputs``.

The stored name is ``STEM-HASH.EXT``: the client's file name reduced to safe
characters (for humans), the first 16 hex digits of the content's SHA-256 (so equal
uploads share one file and a name always means the same pixels, which keeps the
cache of image-loading nodes correct), and an extension from the *detected* format,
never from the client. Only raster formats Pillow can verify are accepted; SVG and
anything else are refused, so no stored file can carry script.

Checks, in order: at most ``max_bytes``; a format Pillow recognises from the header;
at most ``max_pixels`` claimed by the header (a decompression bomb is refused with 413
before anything is decoded); Pillow's structural ``verify``; then a full decode, one
image at a time (its memory is bounded by the pixel limit), so a truncated or corrupt
body is refused rather than stored. Malformed multipart bodies and file names holding
NUL are 400. Answers and listings give the stored name, never a server path; links in
the folder that lead out of it are not listed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import threading
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .bodies import within
from .replies import ApiError
from .schemas import UploadInfo
from .storage import inside, write_atomic

FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
_STEM_RE = re.compile(r"[^A-Za-z0-9_-]+")
#: what aiohttp's multipart reader raises for a body that does not parse
_MULTIPART_ERRORS = (ValueError, AssertionError, LookupError, HttpProcessingError)


class UploadStore:
    """Checks and stores uploads in one folder."""

    def __init__(self, folder: Path, max_bytes: int, max_pixels: int, body_timeout: float = 120.0):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.body_timeout = body_timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        self._decoding = threading.Lock()  # one full decode at a time: peak memory is one image's

    async def receive(self, request: web.Request) -> UploadInfo:
        """Read the first file part of a multipart request (within the body timeout), check it, store it."""
        if request.content_length is not None and request.content_length > self.max_bytes + 64 * 1024:
            raise self._too_large()
        data, filename = await within(self._read_file_part(request), self.body_timeout)
        return await asyncio.to_thread(self.store, data, filename)

    async def _read_file_part(self, request: web.Request) -> tuple[bytes, str]:
        try:
            reader = await request.multipart()
        except _MULTIPART_ERRORS:  # aiohttp's ways of saying "not multipart"
            raise ApiError(415, "not_multipart", "send the image as multipart/form-data") from None
        try:
            part = await reader.next()
            while part is not None and not (isinstance(part, BodyPartReader) and part.filename):
                part = await reader.next()
            if part is None:
                raise ApiError(400, "no_file", "the form holds no file")
            assert isinstance(part, BodyPartReader)
            data = await self._read_part(part)
        except _MULTIPART_ERRORS as exc:
            raise ApiError(400, "bad_multipart", f"the multipart/form-data body is malformed: {exc}") from None
        filename = part.filename or "image"
        if "\x00" in filename:
            raise ApiError(400, "bad_filename", "the file name holds a NUL character")
        return data, filename

    async def _read_part(self, part: BodyPartReader) -> bytes:
        """The part's bytes, at most ``max_bytes``; the part must end with its boundary."""
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > self.max_bytes:
                raise self._too_large()
        if not part.at_eof():
            raise ValueError("the body ends before the part's closing boundary")
        return bytes(data)

    def store(self, data: bytes, filename: str) -> UploadInfo:
        """Check ``data`` is a supported, intact image within the limits and write it; returns its info (off the loop)."""
        if len(data) > self.max_bytes:
            raise self._too_large()
        fmt, width, height = self._check(data)
        stem = _STEM_RE.sub("_", Path(filename.replace("\\", "/")).stem).strip("_-")[:40] or "image"
        name = f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.{FORMATS[fmt]}"
        target = self.folder / name
        if not target.exists():
            write_atomic(target, data)
        return UploadInfo(name=name, path=name, url=upload_url(name), bytes=len(data), width=width, height=height, format=fmt)

    def _check(self, data: bytes) -> tuple[str, int, int]:
        """Format and size of an image that decodes completely; 413/415 otherwise."""
        from PIL import Image, UnidentifiedImageError

        not_an_image = ApiError(415, "not_an_image", "the file is not an image this server accepts (or it is truncated)")
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format, image.size
                if fmt not in FORMATS:
                    raise ApiError(415, "unsupported_image", f"{fmt} images are not accepted (use {', '.join(FORMATS)})")
                if width * height > self.max_pixels:  # refuse decompression bombs before anyone decodes them
                    raise self._too_many_pixels(width, height)
                image.verify()
            with self._decoding, Image.open(io.BytesIO(data)) as image:
                image.load()  # every pixel: a body cut short is refused here, not when a node reads it
        except Image.DecompressionBombError:
            raise ApiError(413, "too_large", f"the image claims more pixels than Pillow will decode; the limit is {self.max_pixels}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise not_an_image from None
        return fmt, width, height

    def list(self) -> list[UploadInfo]:
        """Stored uploads, newest first (off the loop)."""
        files = [p for p in self.folder.iterdir()
                 if not p.name.startswith(".") and p.suffix[1:] in FORMATS.values() and p.is_file() and inside(self.folder, p)]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [UploadInfo(name=p.name, path=p.name, url=upload_url(p.name), bytes=p.stat().st_size) for p in files]

    def _too_large(self) -> ApiError:
        return ApiError(413, "too_large", f"uploads are limited to {self.max_bytes} bytes")

    def _too_many_pixels(self, width: int, height: int) -> ApiError:
        return ApiError(413, "too_large", f"the image has {width}x{height} pixels; the limit is {self.max_pixels}")


def upload_url(name: str) -> str:
    """The API URL of a stored upload."""
    return f"/api/uploads/{name}"
