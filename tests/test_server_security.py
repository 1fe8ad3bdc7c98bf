"""Server security: loopback by default, tokens, same-origin only, file endpoints that never leave their folders."""

from __future__ import annotations

import logging
import os
import sys

import aiohttp
import pytest
from server_support import int_graph, serving, small_registry, text_graph

from nodeflow.server import ServerConfig, ServerConfigError, run_server
from nodeflow.server.config import check_config

SECRET = "TOP-SECRET-CONTENTS-7f3a"

#: Request targets that try to reach ``secret.txt`` beside the data dir, or other files outside a folder.
TRAVERSAL_PROBES = [
    "/api/outputs/../secret.txt",
    "/api/outputs/../../secret.txt",
    "/api/outputs/RUN/../../../secret.txt",
    "/api/outputs/..%2f..%2fsecret.txt",
    "/api/outputs/%2e%2e/%2e%2e/secret.txt",
    "/api/outputs/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/api/outputs/%252e%252e/%252e%252e/secret.txt",
    "/api/outputs/%252e%252e%252f%252e%252e%252fsecret.txt",
    "/api/outputs/RUN/..%5c..%5c..%5csecret.txt",
    "/api/outputs/RUN\\..\\..\\..\\secret.txt",
    "/api/outputs/RUN/escape.txt",
    "/api/outputs/RUN/escape_dir/secret.txt",
    "/api/outputs//etc/passwd",
    "/api/outputs/%2fetc%2fpasswd",
    "/api/outputs/" + "%2e%2e%2f" * 12 + "etc/passwd",
    "/api/outputs/RUN/out.txt%00.png",
    "/api/outputs/RUN/out.txt%2500.png",
    "/api/outputs/C:%5cWindows%5cwin.ini",
    "/api/outputs/..",
    "/api/outputs/.",
    "/api/uploads/../secret.txt",
    "/api/uploads/..%2f..%2fsecret.txt",
    "/api/uploads/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/api/uploads/escape.png",
    "/api/uploads/%2fetc%2fpasswd",
    "/api/workflows/..%2f..%2fsecret",
    "/api/workflows/%2e%2e",
    "/api/workflows/..%252fsecret",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2f..%2fsecret.txt",
    "/escape.txt",
    "/%252e%252e/secret.txt",
    "/.hidden",
]


async def test_traversal_probes_against_file_endpoints_are_refused_and_never_leak(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<p>editor</p>")
    os.symlink(secret, web / "escape.txt")
    (web / ".hidden").write_text(SECRET)
    async with serving(tmp_path / "data", web_dir=web) as c:
        run_id = await c.submit(text_graph("fine", "out.txt"))
        await c.wait(run_id)
        run_dir = c.data_dir / "outputs" / run_id
        os.symlink(secret, run_dir / "escape.txt")
        os.symlink(tmp_path, run_dir / "escape_dir")
        os.symlink(secret, c.data_dir / "inputs" / "escape.png")
        results = {}
        for probe in TRAVERSAL_PROBES:
            results[probe] = await c.raw(f"GET {probe.replace('RUN', run_id)} HTTP/1.1")
        control = await c.raw(f"GET /api/outputs/{run_id}/out.txt HTTP/1.1")
    assert control == (200, b"fine")  # the endpoint itself works
    for probe, (status, body) in results.items():
        assert status in (400, 403, 404), f"{probe} -> {status}"
        assert SECRET.encode() not in body and b"root:" not in body, probe


async def test_file_endpoints_serve_files_as_sandboxed_data(tmp_path):
    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(text_graph("<script>alert(1)</script>", "x.html")))
        async with c.session.get(record["outputs"][0]["url"]) as resp:
            csp = resp.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_cross_origin_post_is_refused_with_403(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1)}, headers={"Origin": "http://evil.example"}) as resp:
            body = await resp.json()
        async with c.session.get("/api/runs") as history:
            runs = (await history.json())["runs"]
    assert resp.status == 403 and body["code"] == "cross_origin"
    assert runs == []  # nothing was queued


async def test_an_origin_on_another_port_of_localhost_is_cross_origin(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/cache/clear", headers={"Origin": f"http://127.0.0.1:{c.port + 1}"}) as resp:
            assert resp.status == 403


async def test_a_null_origin_is_refused_with_403(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/cache/clear", headers={"Origin": "null"}) as resp:
            assert resp.status == 403


async def test_a_same_origin_post_is_accepted(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1)}, headers={"Origin": c.url}) as resp:
            assert resp.status == 202


async def test_a_cross_origin_websocket_is_refused_with_403(tmp_path):
    async with serving(tmp_path / "data") as c:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await c.session.ws_connect("/api/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


async def test_a_cross_site_fetch_without_origin_is_refused_with_403(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/runs", headers={"Sec-Fetch-Site": "cross-site"}) as resp:
            assert resp.status == 403


async def test_a_foreign_host_header_is_refused_so_dns_rebinding_fails(tmp_path):
    async with serving(tmp_path / "data") as c:
        own = await c.raw("GET /api/runs HTTP/1.1")
        rebound = await c.raw("GET /api/runs HTTP/1.1", host=f"attacker.example:{c.port}")
    assert own[0] == 200
    assert rebound[0] == 403 and b"bad_host" in rebound[1]


async def test_with_a_token_a_request_without_it_gets_401(tmp_path):
    async with serving(tmp_path / "data", token="s3cret") as c:
        async with c.session.get("/api/runs") as resp:
            body = await resp.json()
    assert resp.status == 401 and body["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_with_a_token_a_wrong_token_gets_401(tmp_path):
    async with serving(tmp_path / "data", token="s3cret", headers={"Authorization": "Bearer guess"}) as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1)}) as resp:
            assert resp.status == 401


async def test_with_a_token_every_api_route_requires_it(tmp_path):
    from nodeflow.server.routes import ROUTES

    async with serving(tmp_path / "data", token="s3cret") as c:
        statuses = {}
        for route in ROUTES:
            if route.path.startswith("/api"):
                path = route.path.replace("{id}", "0" * 32).replace("{name}", "x").replace("{path:.+}", "a/b.png")
                statuses[route.method + " " + path] = (await c.raw(f"{route.method} {path} HTTP/1.1"))[0]
    assert statuses and all(s == 401 for s in statuses.values()), statuses


async def test_with_a_token_the_bearer_header_is_accepted(tmp_path):
    async with serving(tmp_path / "data", token="s3cret", headers={"Authorization": "Bearer s3cret"}) as c:
        record = await c.wait(await c.submit(int_graph(1)))
    assert record["status"] == "succeeded"


async def test_with_a_token_the_query_token_opens_the_websocket_and_output_urls(tmp_path):
    async with serving(tmp_path / "data", token="s3cret", headers={"Authorization": "Bearer s3cret"}) as c:
        record = await c.wait(await c.submit(text_graph("img", "i.txt")))
        url = record["outputs"][0]["url"]
        async with aiohttp.ClientSession(base_url=c.url) as anonymous:
            async with anonymous.ws_connect("/api/ws?token=s3cret") as ws:
                hello = await ws.receive_json(timeout=5)
            async with anonymous.get(url, params={"token": "s3cret"}) as resp:
                served = await resp.text()
            async with anonymous.get(url) as without:
                pass
    assert hello["type"] == "queue"
    assert served == "img" and without.status == 401


async def test_with_a_token_the_query_token_does_not_authorise_writes(tmp_path):
    async with serving(tmp_path / "data", token="s3cret") as c:
        async with c.session.post("/api/runs?token=s3cret", json={"graph": int_graph(1)}) as resp:
            assert resp.status == 401


async def test_with_a_token_the_editor_page_needs_none(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<p>editor</p>")
    async with serving(tmp_path / "data", token="s3cret", web_dir=web) as c:
        async with c.session.get("/") as resp:
            assert resp.status == 200 and "editor" in await resp.text()


def test_a_non_loopback_host_without_a_token_is_refused():
    with pytest.raises(ServerConfigError, match="token"):
        check_config(ServerConfig(host="192.0.2.10"))


def test_run_server_refuses_a_non_loopback_host_before_binding(tmp_path):
    with pytest.raises(ServerConfigError):
        run_server(host="192.0.2.10", port=0, data_dir=tmp_path)  # refused before any socket exists


def test_a_non_loopback_host_with_a_token_is_allowed():
    check_config(ServerConfig(host="192.0.2.10", token="long-random-token"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_token(host):
    assert ServerConfig(host=host).loopback
    check_config(ServerConfig(host=host))


def test_the_default_host_is_loopback():
    assert ServerConfig().host == "127.0.0.1"


def test_the_ray_backend_without_ray_installed_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    from nodeflow.server import Server

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    with pytest.raises(ServerConfigError, match="ray"):
        Server(ServerConfig(data_dir=tmp_path, backend="ray"), registry=small_registry())


async def test_each_request_logs_one_line_without_its_query_string(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nodeflow.server")
    async with serving(tmp_path / "data", token="s3cret") as c:
        async with c.session.get("/api/outputs/x/y.png?token=s3cret") as resp:
            assert resp.status == 404
    lines = [r.getMessage() for r in caplog.records if "/api/outputs/x/y.png" in r.getMessage()]
    assert len(lines) == 1 and " 404 " in lines[0]
    assert "s3cret" not in caplog.text


async def test_each_run_logs_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nodeflow.server")
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(int_graph(1))
        await c.wait(run_id)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"run {run_id}")]
    assert len(lines) == 1 and "succeeded" in lines[0]
