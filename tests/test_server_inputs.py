"""Server: hostile and malformed inputs get clear 4xx answers, and nothing reveals where the server keeps its files."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import pytest
from PIL import Image
from server_support import int_graph, serving, text_graph


def _png(size: tuple[int, int] = (4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, with ``idat`` as its only data (then IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _multipart(body: bytes, boundary: str = "xyz") -> dict:
    return {"data": body, "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


def _file_part(filename: bytes, data: bytes, boundary: bytes = b"xyz") -> bytes:
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename
            + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n--" + boundary + b"--\r\n")


# -- multipart ------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b"garbage",
    b"--xyz\r\nContent-Disposition form-data\r\n\r\nabc\r\n--xyz--\r\n",
    b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + b"\x89PNG",
], ids=["garbage", "bad-part-header", "unterminated"])
async def test_a_malformed_multipart_body_is_refused_with_400(tmp_path, body):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", **_multipart(body)) as resp:
            answer = await resp.json()
    assert resp.status == 400, answer
    assert answer["code"] == "bad_multipart"
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


@pytest.mark.parametrize(("disposition", "code"), [
    (b'filename="a\x00.png"', "bad_multipart"),  # a raw NUL makes the part's header invalid
    (b"filename*=UTF-8''a%00.png", "bad_filename"),  # an encoded one decodes into the name
], ids=["raw", "encoded"])
async def test_a_nul_in_an_upload_file_name_is_refused_with_400(tmp_path, disposition, code):
    body = (b'--xyz\r\nContent-Disposition: form-data; name="file"; ' + disposition
            + b"\r\nContent-Type: image/png\r\n\r\n" + _png() + b"\r\n--xyz--\r\n")
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", **_multipart(body)) as resp:
            answer = await resp.json()
    assert resp.status == 400 and answer["code"] == code
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


# -- JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["meta", "ui"])
async def test_json_nested_deeply_in_meta_or_ui_is_refused_with_400_at_parse_time(tmp_path, where):
    deep = "[" * 300 + "]" * 300
    node_ui = f', "ui": {{"x": {deep}}}' if where == "ui" else ""
    meta = f', "meta": {{"x": {deep}}}' if where == "meta" else ""
    graph = f'{{"nodes": {{"n": {{"type": "core.int", "inputs": {{"value": 1}}{node_ui}}}}}{meta}}}'
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", data=f'{{"graph": {graph}}}', headers={"Content-Type": "application/json"}) as run:
            run_answer = await run.json()
        async with c.session.put("/api/workflows/deep", data=graph, headers={"Content-Type": "application/json"}) as save:
            save_answer = await save.json()
        async with c.session.get("/api/runs") as history:
            runs = (await history.json())["runs"]
    assert run.status == 400 and run_answer["code"] == "invalid_json" and "nested too deeply" in run_answer["error"]
    assert save.status == 400 and save_answer["code"] == "invalid_json" and "nested too deeply" in save_answer["error"]
    assert runs == [] and not (tmp_path / "data" / "workflows" / "deep.json").exists()


async def test_saved_workflows_are_stored_without_indentation_so_their_size_stays_linear(tmp_path):
    deep = "[" * 40 + "1" + "]" * 40
    graph = {"nodes": {"n": {"type": "core.int", "inputs": {"value": 1}, "ui": {"x": json.loads(deep)}}}}
    async with serving(tmp_path / "data") as c:
        async with c.session.put("/api/workflows/nested", json=graph) as resp:
            assert resp.status == 201
        async with c.session.get("/api/workflows/nested") as back:
            assert (await back.json())["nodes"] == {**graph["nodes"]}
    stored = (tmp_path / "data" / "workflows" / "nested.json").read_text()
    assert "\n " not in stored  # no indentation: each level costs 2 bytes, not 2 per line per level
    assert len(stored) < 2 * len(json.dumps(graph))


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
async def test_non_finite_numbers_are_refused_with_400(tmp_path, constant):
    body = '{"graph": {"nodes": {"n": {"type": "core.float", "inputs": {"value": CONSTANT}}}}}'.replace("CONSTANT", constant)
    inputs_body = json.dumps({"graph": int_graph(1), "inputs": {"value": "CONSTANT"}}).replace('"CONSTANT"', constant)
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", data=body, headers={"Content-Type": "application/json"}) as run:
            answer = await run.json()
        async with c.session.post("/api/runs", data=inputs_body, headers={"Content-Type": "application/json"}) as run2:
            answer2 = await run2.json()
        async with c.session.get("/api/runs") as history:
            runs = (await history.json())["runs"]
    assert run.status == 400 and answer["code"] == "invalid_json" and constant.lstrip("-") in answer["error"]
    assert run2.status == 400 and answer2["code"] == "invalid_json"
    assert runs == []


# -- names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["abc%0A", "abc%0D", "%0Aabc", "abc%0A%0A"])
async def test_a_workflow_name_with_a_newline_is_refused_with_400(tmp_path, name):
    async with serving(tmp_path / "data") as c:
        async with c.session.put(f"/api/workflows/{name}", json=int_graph(1)) as resp:
            answer = await resp.json()
    assert resp.status == 400 and answer["code"] == "bad_name"
    assert list((tmp_path / "data" / "workflows").iterdir()) == []


async def test_a_run_id_with_a_trailing_newline_is_unknown(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(int_graph(1))
        await c.wait(run_id)
        async with c.session.get(f"/api/runs/{run_id}%0A") as resp:
            assert resp.status == 404


# -- HEAD -----------------------------------------------------------------------------------
async def test_head_is_answered_on_every_get_route(tmp_path):
    from nodeflow.server.routes import ROUTES

    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(text_graph("x", "x.txt")))
        statuses = {}
        for route in ROUTES:
            if route.method != "GET" or route.handler in ("websocket", "static"):
                continue
            path = route.path.replace("{id}", record["id"]).replace("{name}", "missing")
            path = path.replace("{path:.+}", record["outputs"][0]["path"])
            async with c.session.head(path) as resp:
                statuses[path] = (resp.status, await resp.read())
    assert statuses
    for path, (status, body) in statuses.items():
        assert status != 405, path
        assert body == b"", path
    assert statuses["/api/system"][0] == 200


# -- images ---------------------------------------------------------------------------------
async def test_a_decompression_bomb_is_refused_with_413(tmp_path):
    bomb = _png_claiming(30_000, 30_000, zlib.compress(b"\0" * 1000))  # 900 megapixels claimed
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", **_multipart(_file_part(b"bomb.png", bomb))) as resp:
            answer = await resp.json()
    assert resp.status == 413 and answer["code"] == "too_large"
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


async def test_a_truncated_image_is_refused(tmp_path):
    truncated = _png_claiming(7000, 7000, zlib.compress(b"\0" * 5000))  # far less data than 7000 rows
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", **_multipart(_file_part(b"cut.png", truncated))) as resp:
            answer = await resp.json()
    assert resp.status == 415 and answer["code"] == "not_an_image"
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


# -- symlinks and absolute paths --------------------------------------------------------------
async def test_upload_listings_skip_links_that_leave_the_uploads_folder(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(_png((5, 5)))) as resp:
            kept = (await resp.json())["name"]
        os.symlink(outside, c.data_dir / "inputs" / "leak.png")
        os.symlink("/etc/passwd", c.data_dir / "inputs" / "passwd.png")
        async with c.session.get("/api/uploads") as resp:
            listing = await resp.text()
    assert [u["name"] for u in json.loads(listing)["uploads"]] == [kept]
    assert "/etc/passwd" not in listing and str(tmp_path) not in listing


async def test_workflow_listings_do_not_follow_links_out_of_the_data_folder(tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({**int_graph(1), "meta": {"description": "SECRET-DESCRIPTION"}}))
    async with serving(tmp_path / "data") as c:
        await c.session.put("/api/workflows/mine", json=int_graph(2))
        os.symlink(outside, c.data_dir / "workflows" / "leak.json")
        async with c.session.get("/api/workflows") as resp:
            listing = await resp.text()
        async with c.session.get("/api/workflows/leak") as direct:
            assert direct.status == 404
    assert [w["name"] for w in json.loads(listing)["workflows"]] == ["mine"]
    assert "SECRET-DESCRIPTION" not in listing


async def test_no_response_reveals_an_absolute_server_path(tmp_path):
    bodies = []
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/uploads", data=_form(_png())) as resp:
            upload = await resp.json()
            bodies.append(json.dumps(upload))
        (c.data_dir / "workflows" / "broken.json").write_text("{not json")
        record = await c.wait(await c.submit(text_graph("x", "x.txt")))
        bodies.append(json.dumps(record))
        for path in ("/api/uploads", "/api/workflows", "/api/workflows/broken", "/api/runs", "/api/system",
                     "/api/openapi.json"):
            async with c.session.get(path) as resp:
                bodies.append(await resp.text())
        async with c.session.post("/api/runs", json={"workflow": "broken"}) as resp:
            bodies.append(await resp.text())
    assert upload["path"] == upload["name"]
    for body in bodies:
        assert str(tmp_path) not in body and str(tmp_path.resolve()) not in body, body[:300]


def _form(data: bytes):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", data, filename="photo.png", content_type="image/png")
    return form
