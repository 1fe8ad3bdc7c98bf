"""Server: image uploads are checked, size-limited, named by content and stored under the data dir."""

from __future__ import annotations

import io

import aiohttp
from PIL import Image
from server_support import serving


def _png(size: tuple[int, int] = (4, 3), color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _form(data: bytes, filename: str = "photo.png", content_type: str = "image/png") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    return form


async def test_an_uploaded_png_is_stored_under_inputs_and_named_by_its_content(tmp_path):
    png = _png()
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(png)) as resp:
            info = await resp.json()
    assert resp.status == 201
    assert info["name"].startswith("photo-") and info["name"].endswith(".png")
    assert (info["width"], info["height"], info["format"]) == (4, 3, "PNG")
    assert (tmp_path / "data" / "inputs" / info["name"]).read_bytes() == png
    assert info["path"] == info["name"]  # relative to the uploads folder: no server path in answers


async def test_the_same_image_uploaded_twice_gets_the_same_name(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(_png())) as first:
            a = await first.json()
        async with c.session.post("/api/uploads", data=_form(_png())) as second:
            b = await second.json()
    assert a["name"] == b["name"]


async def test_a_file_that_is_not_an_image_is_refused_with_415(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(b"<svg onload=alert(1)>", "x.png")) as resp:
            body = await resp.json()
    assert resp.status == 415 and body["code"] == "not_an_image"
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


async def test_an_upload_over_the_size_limit_is_refused_with_413(tmp_path):
    async with serving(tmp_path / "data", max_upload_bytes=1000) as c:
        async with c.session.post("/api/uploads", data=_form(_png((64, 64)) + b"\0" * 2000)) as resp:
            body = await resp.json()
    assert resp.status == 413 and body["code"] == "too_large"


async def test_an_image_with_too_many_pixels_is_refused_with_413(tmp_path):
    async with serving(tmp_path / "data", max_upload_pixels=100) as c:
        async with c.session.post("/api/uploads", data=_form(_png((20, 20)))) as resp:
            assert resp.status == 413


async def test_the_client_file_name_cannot_choose_where_the_file_goes(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(_png(), filename="../../..\\evil.php")) as resp:
            info = await resp.json()
    assert "/" not in info["name"] and "\\" not in info["name"] and info["name"].endswith(".png")
    assert (tmp_path / "data" / "inputs" / info["name"]).is_file()
    assert not list(tmp_path.rglob("evil*"))


async def test_a_request_that_is_not_multipart_is_refused_with_415(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_png(), headers={"Content-Type": "image/png"}) as resp:
            assert resp.status == 415


async def test_uploads_are_listed_and_served(tmp_path):
    png = _png()
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(png)) as resp:
            info = await resp.json()
        async with c.session.get("/api/uploads") as listing:
            names = [u["name"] for u in (await listing.json())["uploads"]]
        async with c.session.get(info["url"]) as served:
            body = await served.read()
    assert names == [info["name"]]
    assert body == png
