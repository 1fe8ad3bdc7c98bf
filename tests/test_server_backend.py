"""Server: the execution backend is an injectable object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server_support import int_graph, serving, small_registry

from nodeflow.server import Backend, LocalBackend


class _Recording(LocalBackend):
    """A local backend that remembers which output folders it was asked to use."""

    def __init__(self) -> None:
        super().__init__(small_registry())
        self.folders: list[Path] = []

    def run(self, graph: Any, inputs: Any, output_dir: Path, on_event: Any, cancel: Any, paths: Any = None, *,
            label: str | None = None) -> Any:
        self.folders.append(output_dir)
        return super().run(graph, inputs, output_dir, on_event, cancel, paths, label=label)


class _Exploding(LocalBackend):
    """Raises on the first run, as a buggy remote backend might."""

    def __init__(self) -> None:
        super().__init__(small_registry())
        self.calls = 0

    def run(self, graph: Any, inputs: Any, output_dir: Path, on_event: Any, cancel: Any, paths: Any = None, *,
            label: str | None = None) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("cluster went away")
        return super().run(graph, inputs, output_dir, on_event, cancel, paths, label=label)


def test_the_local_backend_satisfies_the_backend_protocol():
    assert isinstance(LocalBackend(small_registry()), Backend)


async def test_an_injected_backend_runs_each_run_in_its_own_output_folder(tmp_path):
    backend = _Recording()
    async with serving(tmp_path / "data", backend=backend) as c:
        run_id = await c.submit(int_graph(1))
        record = await c.wait(run_id)
    assert record["status"] == "succeeded"
    assert backend.folders == [(tmp_path / "data" / "outputs" / run_id).resolve()]


async def test_a_backend_that_raises_fails_that_run_and_the_worker_goes_on(tmp_path):
    async with serving(tmp_path / "data", backend=_Exploding()) as c:
        first = await c.wait(await c.submit(int_graph(1)))
        second = await c.wait(await c.submit(int_graph(2)))
    assert first["status"] == "failed" and first["errors"][0]["code"] == "internal_error"
    assert "cluster went away" in first["error"]
    assert second["status"] == "succeeded"
