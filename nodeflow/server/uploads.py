"""Uploaded images: checked with Pillow, size-limited, stored under ``DATA_DIR/inputs``.

The stored name is ``STEM-HASH.EXT``: the client's file name reduced to safe
characters (for humans), the first 16 hex digits of the content's SHA-256 (so equal
uploads share one file and a name always means the same pixels, which keeps the
cache of image-loading nodes correct), and an extension from the *detected* format,
never from the client. Only raster formats Pillow can verify are accepted; SVG and
anything else are refused, so no stored file can carry script.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

from aiohttp import BodyPartReader, web

from .replies import ApiError
from .schemas import UploadInfo

FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
_STEM_RE = re.compile(r"[^A-Za-z0-9_-]+")


class UploadStore:
    """Checks and stores uploads in one folder."""

    def __init__(self, folder: Path, max_bytes: int, max_pixels: int):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.folder.mkdir(parents=True, exist_ok=True)

    async def receive(self, request: web.Request) -> UploadInfo:
        """Read the first file part of a multipart request, check it, store it."""
        if request.content_length is not None and request.content_length > self.max_bytes + 64 * 1024:
            raise self._too_large()
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):  # aiohttp's ways of saying "not multipart"
            raise ApiError(415, "not_multipart", "send the image as multipart/form-data") from None
        part = await reader.next()
        while part is not None and not (isinstance(part, BodyPartReader) and part.filename):
            part = await reader.next()
        if part is None:
            raise ApiError(400, "no_file", "the form holds no file")
        assert isinstance(part, BodyPartReader)
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > self.max_bytes:
                raise self._too_large()
        return self.store(bytes(data), part.filename or "image")

    def store(self, data: bytes, filename: str) -> UploadInfo:
        """Check ``data`` is a supported image within the limits and write it; returns its info."""
        from PIL import Image, UnidentifiedImageError

        if len(data) > self.max_bytes:
            raise self._too_large()
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format, image.size
                if fmt not in FORMATS:
                    raise ApiError(415, "unsupported_image", f"{fmt} images are not accepted (use {', '.join(FORMATS)})")
                if width * height > self.max_pixels:  # refuse decompression bombs before anyone decodes them
                    raise ApiError(413, "too_large", f"the image has {width}x{height} pixels; the limit is {self.max_pixels}")
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise ApiError(415, "not_an_image", "the file is not an image this server accepts") from None
        stem = _STEM_RE.sub("_", Path(filename.replace("\\", "/")).stem).strip("_-")[:40] or "image"
        name = f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.{FORMATS[fmt]}"
        target = self.folder / name
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return UploadInfo(name=name, path=str(target.resolve()), url=upload_url(name), bytes=len(data),
                          width=width, height=height, format=fmt)

    def list(self) -> list[UploadInfo]:
        """Stored uploads, newest first."""
        files = [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix[1:] in FORMATS.values()]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [UploadInfo(name=p.name, path=str(p.resolve()), url=upload_url(p.name), bytes=p.stat().st_size) for p in files]

    def _too_large(self) -> ApiError:
        return ApiError(413, "too_large", f"uploads are limited to {self.max_bytes} bytes")


def upload_url(name: str) -> str:
    """The API URL of a stored upload."""
    return f"/api/uploads/{name}"
