"""The example pack, run the way nodeflow runs it: loaded into a Registry, executed by an Executor.

The ``registry`` fixture puts this checkout's ``src/`` first on ``sys.path`` for the
import, so the tests need no install and run within nodeflow's own suite. The path is
only prepended while a test runs: left there, a stray ``*.egg-info`` in ``src/`` (from
an editable install) would add the pack's entry point to every other test's registry.
"""

import importlib
from pathlib import Path

import pytest
import torch

from nodeflow.executor import Executor
from nodeflow.node import Output, node
from nodeflow.registry import Registry
from nodeflow.values import Image

SRC = Path(__file__).resolve().parent.parent / "src"

#: A 1x3x1x2 image: a pure red pixel and a pure blue one.
SAMPLE = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]])


@node("pack_tests.sample_image", category="tests")
class SampleImage:
    """Feeds :data:`SAMPLE` into a graph (an IMAGE cannot be typed in as a literal)."""

    image = Output(Image)

    def run(self, ctx):
        return Image(SAMPLE)


@pytest.fixture
def registry(monkeypatch) -> Registry:
    monkeypatch.syspath_prepend(str(SRC))
    registry = Registry()
    registry.load_pack("example", lambda: importlib.import_module("nodeflow_example_pack"))
    registry.add(SampleImage, "pack_tests")
    assert not registry.errors, registry.errors
    return registry


def run_one(registry: Registry, type_id: str, inputs: dict, upstream: dict | None = None):
    """Run one node (plus ``upstream`` nodes it links to) and return the run result."""
    nodes = {**(upstream or {}), "n": {"type": type_id, "inputs": inputs}}
    return Executor(registry).run({"nodes": nodes}, targets=["n"])


def output_of(result, name: str):
    assert result.status == "succeeded", result.errors
    return result.values["n"][name]


def test_pack_registers_its_three_nodes_under_the_pack_name(registry):
    ids = {"example.prompt_template", "example.remap", "example.grayscale"}
    assert ids <= set(registry.ids())
    assert {registry.schema(i).pack for i in ids} == {"example"}


def test_prompt_template_fills_subject_and_style(registry):
    result = run_one(registry, "example.prompt_template", {"subject": "a lighthouse", "style": "watercolor"})
    assert output_of(result, "text") == "a watercolor photo of a lighthouse"


def test_prompt_template_keeps_doubled_braces_as_literal_braces(registry):
    result = run_one(registry, "example.prompt_template", {"template": "{{{subject}}}", "subject": "cat"})
    assert output_of(result, "text") == "{cat}"


def test_prompt_template_with_an_unknown_placeholder_fails_naming_it(registry):
    result = run_one(registry, "example.prompt_template", {"template": "a photo of {subjet}"})
    assert result.status == "failed"
    assert result.errors[0].node == "n"
    assert "{subjet}" in result.errors[0].message


def test_remap_maps_linearly_between_ranges(registry):
    inputs = {"value": 0.25, "in_min": 0.0, "in_max": 1.0, "out_min": 4.0, "out_max": 12.0}
    assert output_of(run_one(registry, "example.remap", inputs), "result") == pytest.approx(6.0)


def test_remap_clamps_to_the_output_range_by_default(registry):
    inputs = {"value": 3.0, "out_min": 4.0, "out_max": 12.0}
    assert output_of(run_one(registry, "example.remap", inputs), "result") == pytest.approx(12.0)


def test_remap_without_clamp_extrapolates(registry):
    inputs = {"value": 2.0, "out_min": 0.0, "out_max": 10.0, "clamp": False}
    assert output_of(run_one(registry, "example.remap", inputs), "result") == pytest.approx(20.0)


def test_remap_onto_a_reversed_range_flips_the_direction(registry):
    inputs = {"value": 0.25, "out_min": 1.0, "out_max": 0.0}
    assert output_of(run_one(registry, "example.remap", inputs), "result") == pytest.approx(0.75)


def test_remap_from_an_empty_input_range_fails(registry):
    result = run_one(registry, "example.remap", {"in_min": 1.0, "in_max": 1.0})
    assert result.status == "failed"
    assert "empty" in result.errors[0].message


def test_grayscale_gives_every_channel_the_bt601_luma(registry):
    source = {"src": {"type": "pack_tests.sample_image"}}
    result = run_one(registry, "example.grayscale", {"image": {"node": "src", "output": "image"}}, source)
    pixels = output_of(result, "result").pixels
    expected = torch.tensor([0.299, 0.114]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    torch.testing.assert_close(pixels, expected)


def test_grayscale_at_strength_zero_keeps_the_colours(registry):
    source = {"src": {"type": "pack_tests.sample_image"}}
    inputs = {"image": {"node": "src", "output": "image"}, "strength": 0.0}
    pixels = output_of(run_one(registry, "example.grayscale", inputs, source), "result").pixels
    torch.testing.assert_close(pixels, SAMPLE)


def test_grayscale_leaves_its_input_image_unchanged(registry):
    before = SAMPLE.clone()
    source = {"src": {"type": "pack_tests.sample_image"}}
    result = run_one(registry, "example.grayscale", {"image": {"node": "src", "output": "image"}}, source)
    assert result.status == "succeeded", result.errors  # the executor fails a node that mutates an input
    torch.testing.assert_close(SAMPLE, before)


def test_grayscale_rejects_a_strength_above_one_before_running(registry):
    source = {"src": {"type": "pack_tests.sample_image"}}
    result = run_one(registry, "example.grayscale", {"image": {"node": "src", "output": "image"}, "strength": 1.5}, source)
    assert [(e.code, e.input) for e in result.errors] == [("value_out_of_range", "strength")]
