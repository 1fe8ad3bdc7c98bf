"""``nodeflow sweep`` on the local backend: values, products, names, the manifest, the command.

Needs no Ray. Most tests use the ``sweeptest`` plugin pack (tests/sweep_plugins), which
paints tiny PNGs; one runs the shipped txt2img workflow on the tiny SD fixture model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nodeflow.backends import Backend, LocalBackend
from nodeflow.backends import Backend as ExecutionBackend
from nodeflow.cli import main
from nodeflow.graph import parse_graph
from nodeflow.registry import build_registry
from nodeflow.sweep import (
    SweepUsageError,
    expand,
    job_stems,
    parse_sets,
    parse_values,
    run_sweep,
    safe_part,
)

PLUGINS = Path(__file__).resolve().parent / "sweep_plugins"


def paint_graph(**literals: Any) -> dict[str, Any]:
    """One ``sweeptest.paint`` node with ``value`` and ``label`` exposed as graph inputs."""
    return {
        "nodes": {"paint": {"type": "sweeptest.paint", "inputs": {"value": 0, "label": "", **literals}}},
        "inputs": {"value": {"node": "paint", "input": "value"}, "label": {"node": "paint", "input": "label"}},
    }


@pytest.fixture(scope="module")
def registry():
    registry = build_registry([PLUGINS])
    assert "sweeptest.paint" in registry
    return registry


@pytest.fixture
def backend(registry):
    backend = LocalBackend(registry)
    yield backend
    backend.close()


def grey_of(path: Path) -> int:
    return int(np.asarray(Image.open(path))[0, 0])


# -- values -------------------------------------------------------------------------------------------
def test_a_json_list_gives_one_job_per_element():
    assert parse_values("[1, 2, 3]") == [1, 2, 3]


def test_a_range_includes_both_ends():
    assert parse_values("0..15") == list(range(16))
    assert parse_values("-2..-1") == [-2, -1]


def test_a_descending_range_is_refused_with_the_rule_in_the_message():
    with pytest.raises(SweepUsageError, match="both ends are included"):
        parse_values("5..1")


def test_a_values_file_gives_one_job_per_non_blank_line(tmp_path):
    (tmp_path / "prompts.txt").write_text("a cat\n\n  \na dog on a sofa\r\n", encoding="utf-8")
    assert parse_values("@prompts.txt", text=True, base_dir=tmp_path) == ["a cat", "a dog on a sofa"]


def test_file_lines_are_json_for_non_text_inputs(tmp_path):
    (tmp_path / "seeds.txt").write_text("3\n7\n", encoding="utf-8")
    assert parse_values(f"@{tmp_path / 'seeds.txt'}") == [3, 7]


def test_a_missing_values_file_is_a_usage_error(tmp_path):
    with pytest.raises(SweepUsageError, match="cannot read the values file"):
        parse_values(f"@{tmp_path / 'nope.txt'}")


def test_a_plain_value_is_a_one_element_list():
    assert parse_values("4") == [4]
    assert parse_values("a cat") == ["a cat"]


def test_text_inputs_keep_plain_values_as_text(registry):
    doc = parse_graph(paint_graph())
    sets = parse_sets(["label=42", "value=42"], doc, registry)
    assert sets == {"label": ["42"], "value": [42]}


def test_several_sets_form_a_product_with_the_first_varying_slowest():
    jobs = expand({"seed": [1, 2], "prompt": ["a", "b", "c"]})
    assert [(j["seed"], j["prompt"]) for j in jobs] == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c")]


# -- names --------------------------------------------------------------------------------------------
def test_file_names_use_only_the_parameters_that_vary():
    jobs = expand({"steps": [4], "seed": [3, 4], "prompt": ["a cat"]})
    assert job_stems(jobs) == ["seed=3", "seed=4"]


def test_file_names_use_every_parameter_when_none_varies():
    assert job_stems(expand({"seed": [3], "prompt": ["a cat"]})) == ["seed=3_prompt=a-cat"]


def test_file_names_are_sanitised_and_shortened():
    assert safe_part("a cat/../on a 'mat'?") == "a-cat-..-on-a-mat"
    assert len(safe_part("x" * 500)) == 40
    assert safe_part("   ") == "empty"


def test_jobs_whose_names_would_collide_get_distinct_names():
    stems = job_stems(expand({"prompt": ["a cat", "a/cat", "a cat"]}))
    assert stems == ["prompt=a-cat", "prompt=a-cat_job=1", "prompt=a-cat_job=2"]


# -- running ------------------------------------------------------------------------------------------
def test_a_local_sweep_writes_one_file_per_job_named_by_its_parameters(backend, tmp_path):
    jobs = expand({"value": [10, 20], "label": ["a cat", "a dog"]})
    manifest = run_sweep(parse_graph(paint_graph()), jobs, backend, tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"value={v}_label={label}.png" for v in (10, 20) for label in ("a-cat", "a-dog")] + ["sweep.json"])
    assert grey_of(tmp_path / "value=20_label=a-dog.png") == 20
    assert manifest["status"] == "succeeded" and manifest["counts"] == {"succeeded": 4}


def test_the_manifest_lists_every_job_with_parameters_status_seconds_and_files(backend, tmp_path):
    run_sweep(parse_graph(paint_graph()), expand({"value": [1, 2]}), backend, tmp_path, progress=False, info={"graph": "g.json"})
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert manifest["graph"] == "g.json" and manifest["backend"] == "local" and manifest["parameters"] == {"value": [1, 2]}
    first = manifest["jobs"][0]
    assert first["index"] == 0 and first["parameters"] == {"value": 1} and first["status"] == "succeeded"
    assert first["outputs"] == ["value=1.png"] and first["errors"] == [] and first["attempts"] == 1
    assert first["worker"] == "local" and first["seconds"] >= 0


def test_a_failing_job_is_reported_and_the_other_jobs_still_complete(backend, tmp_path):
    manifest = run_sweep(parse_graph(paint_graph(fail_on=2)), expand({"value": [1, 2, 3]}), backend, tmp_path, progress=False)
    assert [j["status"] for j in manifest["jobs"]] == ["succeeded", "failed", "succeeded"]
    assert manifest["jobs"][1]["errors"][0]["code"] == "node_failed" and manifest["jobs"][1]["outputs"] == []
    assert manifest["status"] == "failed"
    assert (tmp_path / "value=3.png").is_file() and not (tmp_path / "value=2.png").exists()


def test_a_repeated_job_served_from_the_cache_still_gets_its_file(backend, tmp_path):
    manifest = run_sweep(parse_graph(paint_graph()), expand({"value": [5, 5]}), backend, tmp_path, progress=False)
    assert [j["outputs"] for j in manifest["jobs"]] == [["value=5.png"], ["value=5_job=1.png"]]
    assert grey_of(tmp_path / "value=5_job=1.png") == 5


def test_the_job_folders_are_removed_once_their_files_are_moved(backend, tmp_path):
    run_sweep(parse_graph(paint_graph()), expand({"value": [1, 2]}), backend, tmp_path, progress=False)
    assert not (tmp_path / ".jobs").exists()


def test_the_local_backend_is_a_backend_and_a_server_execution_backend(backend):
    assert isinstance(backend, Backend)
    assert isinstance(backend, ExecutionBackend)


def test_a_local_job_result_names_its_worker_and_attempts(backend, tmp_path):
    result = backend.submit(paint_graph(), {"value": 1}, tmp_path).result()
    assert (result.status, result.worker, result.attempts) == ("succeeded", "local", 1)
    assert Path(result.outputs[0]["path"]).parent == tmp_path


# -- the command ----------------------------------------------------------------------------------------
def write_graph(tmp_path: Path, **literals: Any) -> Path:
    path = tmp_path / "paint.json"
    path.write_text(json.dumps(paint_graph(**literals)))
    return path


def test_the_sweep_command_prints_the_files_and_exits_zero(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sweep", str(write_graph(tmp_path)), "--set", "value=[7,8]", "--out", str(out), "--plugins", str(PLUGINS)])
    printed = capsys.readouterr()
    assert code == 0
    assert printed.out.split() == [str(out / "value=7.png"), str(out / "value=8.png")]
    assert "2 jobs (2 succeeded)" in printed.err


def test_the_sweep_command_exits_one_when_a_job_fails(tmp_path, capsys):
    code = main(["sweep", str(write_graph(tmp_path, fail_on=8)), "--set", "value=7..8", "--out", str(tmp_path / "out"),
                 "--plugins", str(PLUGINS)])
    assert code == 1
    assert "value 8 is the one that fails" in capsys.readouterr().err


def test_an_invalid_job_stops_the_sweep_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sweep", str(write_graph(tmp_path)), "--set", "value=[1,\"x\"]", "--out", str(out), "--plugins", str(PLUGINS)])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 2 jobs are invalid; nothing was run" in err and "job 1" in err
    assert not out.exists()


def test_an_unreadable_set_is_a_usage_error(tmp_path, capsys):
    code = main(["sweep", str(write_graph(tmp_path)), "--set", "value=9..1", "--plugins", str(PLUGINS)])
    assert code == 2 and "both ends are included" in capsys.readouterr().err


def test_the_ray_backend_without_ray_installed_is_a_usage_error_saying_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    code = main(["sweep", str(write_graph(tmp_path)), "--set", "value=1", "--backend", "ray", "--out", str(tmp_path / "out"),
                 "--plugins", str(PLUGINS)])
    assert code == 2 and "pip install 'nodeflow[ray]'" in capsys.readouterr().err


def test_a_txt2img_seed_sweep_writes_one_distinct_image_per_seed(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sweep", "txt2img", "--set", "seed=0..2", "--set", f"model={tiny_sd_dir}", "--set", "steps=2",
                 "--set", "width=32", "--set", "height=32", "--out", str(out), "--json"])
    manifest = json.loads(capsys.readouterr().out)
    assert code == 0, manifest
    assert [j["outputs"] for j in manifest["jobs"]] == [["seed=0.png"], ["seed=1.png"], ["seed=2.png"]]
    pixels = [np.asarray(Image.open(out / f"seed={s}.png")) for s in range(3)]
    assert pixels[0].shape == (32, 32, 3)
    assert not np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[1], pixels[2])
