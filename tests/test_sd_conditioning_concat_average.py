"""Conditioning Concat and Conditioning Average: ComfyUI's tensor operations on prompt embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nodeflow_nodes.sd.conditioning import ConditioningAverage, ConditioningConcat

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.node import Context
from nodeflow.values import Conditioning

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def ctx() -> Context:
    return Context("n", "test")


def cond(batch: int, length: int, seed: int, width: int = 8) -> Conditioning:
    return Conditioning(torch.randn(batch, length, width, generator=torch.Generator().manual_seed(seed)))


def test_concat_appends_from_after_to_along_the_sequence():
    to, source = cond(1, 77, 0), cond(1, 154, 1)
    out = ConditioningConcat().run(ctx(), to, source)
    assert torch.equal(out.embeddings, torch.cat([to.embeddings, source.embeddings], dim=1))


def test_concat_applies_a_single_from_prompt_to_every_to_prompt():
    to, source = cond(2, 77, 0), cond(1, 77, 1)
    out = ConditioningConcat().run(ctx(), to, source).embeddings
    assert out.shape == (2, 154, 8) and torch.equal(out[1, 77:], source.embeddings[0])


def test_concat_refuses_embeddings_of_another_width():
    with pytest.raises(ValueError, match="different text encoders"):
        ConditioningConcat().run(ctx(), cond(1, 77, 0, width=8), cond(1, 77, 1, width=16))


def test_average_is_to_times_strength_plus_from_times_the_rest():
    to, source = cond(1, 77, 0), cond(1, 77, 1)
    out = ConditioningAverage().run(ctx(), to, source, 0.25).embeddings
    assert torch.equal(out, to.embeddings * 0.25 + source.embeddings * 0.75)


def test_average_cuts_a_longer_from_to_the_length_of_to():
    to, source = cond(1, 77, 0), cond(1, 154, 1)
    out = ConditioningAverage().run(ctx(), to, source, 0.5).embeddings
    assert out.shape == (1, 77, 8) and torch.equal(out, to.embeddings * 0.5 + source.embeddings[:, :77] * 0.5)


def test_average_pads_a_shorter_from_with_zeros():
    to, source = cond(1, 154, 0), cond(1, 77, 1)
    out = ConditioningAverage().run(ctx(), to, source, 0.5).embeddings
    assert torch.equal(out[:, :77], to.embeddings[:, :77] * 0.5 + source.embeddings * 0.5)
    assert torch.equal(out[:, 77:], to.embeddings[:, 77:] * 0.5)


def test_average_with_strength_one_is_to_unchanged():
    to = cond(1, 77, 0)
    assert torch.equal(ConditioningAverage().run(ctx(), to, cond(1, 77, 1), 1.0).embeddings, to.embeddings)


@pytest.mark.usefixtures("sd_one_thread")
def test_an_averaged_prompt_drives_the_txt2img_workflow(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    graph = load_graph(WORKFLOWS / "txt2img.json").model_dump(mode="json")
    nodes = graph["nodes"]
    nodes["other"] = {"type": "sd.tokenize", "inputs": {"tokenizer": {"node": "load", "output": "tokenizer"}, "text": "a dog"}}
    nodes["encode_other"] = {"type": "sd.text_encode", "inputs": {
        "text_encoder": {"node": "load", "output": "text_encoder"}, "tokens": {"node": "other", "output": "tokens"}}}
    nodes["mix"] = {"type": "sd.conditioning_average", "inputs": {
        "conditioning_to": {"node": "encode_prompt", "output": "conditioning"},
        "conditioning_from": {"node": "encode_other", "output": "conditioning"}, "to_strength": 0.5}}
    nodes["denoise"]["inputs"]["positive"] = {"node": "mix", "output": "conditioning"}
    inputs = {"model": str(tiny_sd_dir), "steps": 2, "width": 32, "height": 32}

    result = Executor(sd_registry, Cache(), sd_models).run(graph, inputs=inputs, output_dir=tmp_path)

    assert result.status == "succeeded", result.errors
    assert result.nodes["mix"].status == "ran" and len(result.outputs) == 1
