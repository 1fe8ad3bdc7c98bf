"""Batches: a batch equals diffusers' num_images_per_prompt, per-image seeds equal batch-1 runs, pick and join."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import png_pixels, run_graph
from nodeflow_nodes.sd import _common
from nodeflow_nodes.sd.batches import ImageFromBatch, JoinImages, JoinLatents, LatentFromBatch
from nodeflow_nodes.sd.images import BATCH_INDEX_CHUNK, GRAPH_CHUNK
from PIL import Image as PILImage

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.node import Context
from nodeflow.values import Image, Latents, NoiseMask

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT, NEGATIVE, SEED, STEPS, GUIDANCE = "a blue bird", "dark", 77, 3, 5.0


def ctx() -> Context:
    return Context("n", "test")


def _run(out: Path, capsys: pytest.CaptureFixture[str], model: Path, **values: object) -> list[Path]:
    settings = {"model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
                "guidance_scale": GUIDANCE, "width": 32, "height": 32, "scheduler": "euler_a", **values}
    return [Path(p) for p in run_graph(WORKFLOWS / "txt2img.json", out, capsys, **settings)["outputs"]]


# -- whole runs --------------------------------------------------------------------------------------
def test_a_batch_of_three_equals_num_images_per_prompt_with_ddim(tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference("DDIMScheduler")(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, num_images_per_prompt=3,
        width=32, height=32, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images
    pngs = _run(tmp_path, capsys, tiny_sd_dir, scheduler="ddim", **{"noise.batch": 3})
    assert len(pngs) == 3 and all(np.array_equal(png_pixels(p), np.array(e)) for p, e in zip(pngs, expected, strict=True))


def test_per_image_seeds_equal_diffusers_with_one_generator_per_image(tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference("EulerAncestralDiscreteScheduler")(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, num_images_per_prompt=2,
        width=32, height=32, generator=[torch.Generator("cpu").manual_seed(SEED + i) for i in range(2)],
    ).images
    pngs = _run(tmp_path, capsys, tiny_sd_dir, **{"noise.batch": 2, "noise.per_image_seeds": "true"})
    assert all(np.array_equal(png_pixels(p), np.array(e)) for p, e in zip(pngs, expected, strict=True))


def test_with_per_image_seeds_image_i_is_the_batch_of_one_with_seed_plus_i(tiny_sd_dir, tmp_path, capsys):
    batch = _run(tmp_path / "batch", capsys, tiny_sd_dir, **{"noise.batch": 3, "noise.per_image_seeds": "true"})
    for i, png in enumerate(batch):
        (alone,) = _run(tmp_path / f"alone{i}", capsys, tiny_sd_dir, seed=SEED + i)
        assert np.array_equal(png_pixels(png), png_pixels(alone)), f"image {i}"


def test_each_png_of_a_batch_carries_the_graph_and_its_index_and_the_graph_remakes_it(tiny_sd_dir, sd_registry, sd_models, tmp_path, capsys):
    pngs = _run(tmp_path / "first", capsys, tiny_sd_dir, **{"noise.batch": 2, "noise.per_image_seeds": "true"})
    texts = []
    for png in pngs:
        with PILImage.open(png) as picture:
            texts.append(dict(picture.text))
    assert [t[BATCH_INDEX_CHUNK] for t in texts] == ["0", "1"]
    graph = json.loads(texts[1][GRAPH_CHUNK])
    assert graph["nodes"]["noise"]["inputs"]["batch"] == 2 and graph["nodes"]["noise"]["inputs"]["per_image_seeds"] is True
    assert graph["nodes"]["prompt"]["inputs"]["text"] == PROMPT

    again = Executor(sd_registry, Cache(), sd_models).run(graph, output_dir=tmp_path / "again")
    assert again.status == "succeeded", again.errors
    assert [png_pixels(Path(o["path"])).tolist() for o in again.outputs] == [png_pixels(p).tolist() for p in pngs]


# -- picking and joining -----------------------------------------------------------------------------
def _images(n: int) -> Image:
    return Image(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4) / 10)


def test_image_from_batch_takes_index_and_length():
    picked = ImageFromBatch().run(ctx(), _images(5), 1, 3)
    assert picked.pixels[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize(("index", "length", "message"), [(5, 1, "index 5 is past the end of a batch of 5"),
                                                          (3, 3, "length 3 runs past the end of a batch of 5")])
def test_image_from_batch_refuses_a_span_outside_the_batch(index, length, message):
    with pytest.raises(ValueError, match=message):
        ImageFromBatch().run(ctx(), _images(5), index, length)


def test_join_images_puts_b_after_a_and_refuses_another_size():
    joined = JoinImages().run(ctx(), _images(2), _images(1))
    assert joined.pixels[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1, 0.0])
    with pytest.raises(ValueError, match="4x4 and images_b 8x4.*Resize Image"):
        JoinImages().run(ctx(), _images(1), Image(torch.zeros(1, 3, 4, 8)))


def _per_image_latents(seeds: list[int]) -> Latents:
    streams = _common.per_image_streams(seeds)
    samples = _common.noise((len(seeds), 4, 2, 2), streams, torch.device("cpu"), torch.float32)
    return Latents(samples, 0.18215, streams.get_state())


def test_latent_from_batch_keeps_each_picked_images_own_stream():
    batch = _per_image_latents([10, 11, 12])
    picked = LatentFromBatch().run(ctx(), batch, 2, 1)
    alone = _per_image_latents([12])
    assert torch.equal(picked.samples, alone.samples)
    assert picked.generator_state is not None and torch.equal(picked.generator_state, alone.generator_state)


def test_join_latents_keeps_per_image_streams_side_by_side():
    joined = JoinLatents().run(ctx(), _per_image_latents([1]), _per_image_latents([2, 3]))
    both = _per_image_latents([1, 2, 3])
    assert torch.equal(joined.samples, both.samples)
    assert joined.generator_state is not None and torch.equal(joined.generator_state, both.generator_state)


def test_join_latents_continues_the_first_stream_when_the_batch_shares_one():
    a = Latents(torch.zeros(1, 4, 2, 2), 0.18215, _common.stream(seed=4).get_state())
    b = Latents(torch.ones(2, 4, 2, 2), 0.18215, _common.stream(seed=5).get_state())
    joined = JoinLatents().run(ctx(), a, b)
    assert joined.samples.shape[0] == 3 and torch.equal(joined.generator_state, a.generator_state)


def test_join_latents_refuses_other_shapes_and_other_vaes():
    a = Latents(torch.zeros(1, 4, 2, 2), 0.18215)
    with pytest.raises(ValueError, match="must match"):
        JoinLatents().run(ctx(), a, Latents(torch.zeros(1, 4, 4, 4), 0.18215))
    with pytest.raises(ValueError, match="different VAEs"):
        JoinLatents().run(ctx(), a, Latents(torch.zeros(1, 4, 2, 2), 0.13025))


def _inpaint_latents(rows: int, fill: float) -> Latents:
    """Inpainting latents as Set Latent Noise Mask, Img2Img Init and Inpaint Model Conditioning leave them (one shared mask row)."""
    samples = torch.arange(rows * 16, dtype=torch.float32).reshape(rows, 4, 2, 2) + fill
    mask = NoiseMask(torch.ones(1, 1, 2, 2) * fill, samples - 1, samples + 1)
    return Latents(samples, 0.18215, None, vae_factor=4, noise_mask=mask, concat=torch.full((1, 5, 2, 2), fill))


def test_latent_from_batch_keeps_the_inpainting_mask_and_channels_of_the_picked_rows():
    batch = _inpaint_latents(3, 0.0)
    picked = LatentFromBatch().run(ctx(), batch, 1, 2)

    assert picked.vae_factor == 4 and torch.equal(picked.samples, batch.samples[1:3])
    assert picked.noise_mask is not None and torch.equal(picked.noise_mask.original, batch.noise_mask.original[1:3])
    assert torch.equal(picked.noise_mask.noise, batch.noise_mask.noise[1:3])
    assert torch.equal(picked.noise_mask.mask, batch.noise_mask.mask)  # one row: shared by the batch
    assert picked.concat is not None and torch.equal(picked.concat, batch.concat)


def test_join_latents_joins_inpainting_masks_and_channels_row_by_row():
    a, b = _inpaint_latents(1, 0.0), _inpaint_latents(2, 0.5)
    joined = JoinLatents().run(ctx(), a, b)

    assert joined.vae_factor == 4 and joined.samples.shape[0] == 3
    assert joined.noise_mask is not None and joined.concat is not None
    assert joined.noise_mask.mask[:, 0, 0, 0].tolist() == [0.0, 0.5, 0.5]
    assert torch.equal(joined.noise_mask.original, torch.cat([a.noise_mask.original, b.noise_mask.original]))
    assert joined.concat[:, 0, 0, 0].tolist() == [0.0, 0.5, 0.5]


def test_join_latents_refuses_a_masked_and_an_unmasked_batch():
    plain = Latents(torch.zeros(1, 4, 2, 2), 0.18215, vae_factor=4)
    with pytest.raises(ValueError, match="only one of latents_a and latents_b carries an inpainting mask"):
        JoinLatents().run(ctx(), _inpaint_latents(1, 0.0), plain)


def test_a_stream_continues_from_a_row_of_a_sliced_stack_of_states():
    batch = _per_image_latents([10, 11, 12])
    picked = LatentFromBatch().run(ctx(), batch, 1, 2)
    joined = JoinLatents().run(ctx(), picked, Latents(torch.zeros(1, 4, 2, 2), 0.18215))  # shares picked's first stream
    expected = _common.stream(seed=11)
    _common.noise((1, 4, 2, 2), expected, torch.device("cpu"), torch.float32)
    assert torch.equal(_common.stream(joined.generator_state).get_state(), expected.get_state())
