"""The one denoise loop's extension: conditioning entries, added UNet inputs, inpainting latents.

* Semantics of several entries (combine, area, mask, strength) on a fake UNet whose
  prediction is a known number per entry, so the weighted mean can be read off.
* ``added`` tensors reach the UNet as ``added_cond_kwargs`` exactly as diffusers' SDXL
  pipeline builds them: a tiny SDXL-shaped UNet (``text_time`` added embedding) denoised
  by the loop equals ``StableDiffusionXLPipeline`` given the same embeddings.
* For every feature, the unrolled step nodes equal the loop bit for bit.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from nodeflow_nodes.sd import _sampling
from nodeflow_nodes.sd.conditioning import ConditioningCombine, ConditioningSetArea, ConditioningSetMask
from nodeflow_nodes.sd.sampling import Denoise, Guidance, SchedulerStep, UNetStep

from nodeflow.context import Context
from nodeflow.values import Conditioning, Latents, NoiseMask

pytestmark = pytest.mark.usefixtures("sd_one_thread")
CTX = Context("test", "test")


class EntryMeanUNet:
    """A fake UNet: each row's prediction is that row's embedding mean, everywhere (records its calls)."""

    config = SimpleNamespace(in_channels=4)

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, sample, t, encoder_hidden_states, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(tuple(sample.shape))
        means = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (means.expand(sample.shape[0], 4, *sample.shape[2:]).clone(),)


def _text(value: float) -> Conditioning:
    return Conditioning(torch.full((1, 77, 8), value))


def _predict(positive: Conditioning, negative: Conditioning | None = None, size: int = 16) -> tuple[torch.Tensor, EntryMeanUNet]:
    unet = EntryMeanUNet()
    latents = Latents(torch.zeros(1, 4, size, size), vae_factor=8)
    plan = _sampling.prepare(unet, positive, negative, latents)
    cond, _ = _sampling.predict(unet, SimpleNamespace(), plan, latents.samples, torch.tensor(10), (0, 1))
    return cond, unet


def test_combined_entries_average_their_predictions_in_one_call():
    combined = ConditioningCombine().run(CTX, _text(1.0), _text(3.0))
    cond, unet = _predict(combined, _text(0.0))
    assert torch.allclose(cond, torch.full_like(cond, 2.0))
    assert unet.calls == [(3, 4, 16, 16)]  # negative, first, second: one batch


def test_strength_weighs_an_entry_against_the_others():
    strong = ConditioningSetMask().run(CTX, _text(3.0), _mask_of_ones(), 3.0, "default")
    cond, _ = _predict(ConditioningCombine().run(CTX, _text(1.0), strong))
    assert torch.allclose(cond, torch.full_like(cond, (1.0 + 3.0 * 3.0) / 4.0))


def _mask_of_ones() -> object:
    from nodeflow.values import Mask

    return Mask(torch.ones(1, 1, 128, 128))


def test_an_area_entry_predicts_only_inside_its_area_with_feathered_inner_edges():
    left = ConditioningSetArea().run(CTX, _text(3.0), 0, 0, 64, 128, 1.0)  # pixels: the left half of 128x128 (8 of 16 cells)
    cond, unet = _predict(ConditioningCombine().run(CTX, _text(1.0), left))
    assert unet.calls == [(1, 4, 16, 16), (1, 4, 16, 8)]  # the area entry runs on its crop
    assert torch.allclose(cond[..., 8:], torch.ones_like(cond[..., 8:]))  # right half: the full-frame entry only
    assert torch.allclose(cond[..., 0], torch.full_like(cond[..., 0], 2.0))  # left border: both weigh 1
    # the inner edge (column 7) fades: weight 1/8 for the area entry
    assert torch.allclose(cond[..., 7], torch.full_like(cond[..., 7], (1.0 + 3.0 / 8) / (1 + 1 / 8)))


def test_a_mask_entry_weighs_per_cell_and_uncovered_cells_predict_zero():
    from nodeflow.values import Mask

    mask = torch.zeros(1, 1, 128, 128)
    mask[..., :, 64:] = 1.0
    only = ConditioningSetMask().run(CTX, _text(5.0), Mask(mask), 1.0, "default")
    cond, _ = _predict(only)
    assert torch.allclose(cond[..., 9:], torch.full_like(cond[..., 9:], 5.0))
    assert torch.equal(cond[..., :7], torch.zeros_like(cond[..., :7]))


def test_mask_bounds_restrict_the_unet_call_to_the_masks_box():
    from nodeflow.values import Mask

    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 16:48, 64:96] = 1.0
    boxed = ConditioningSetMask().run(CTX, _text(2.0), Mask(mask), 1.0, "bounds")
    assert boxed.area == (64, 16, 32, 32)
    _, unet = _predict(ConditioningCombine().run(CTX, _text(1.0), boxed))
    assert (1, 4, 4, 4) in unet.calls


def test_a_plain_conditioning_takes_the_unchanged_batch_2_path():
    plan = _sampling.prepare(EntryMeanUNet(), _text(1.0), _text(0.0), Latents(torch.zeros(2, 4, 8, 8)))
    assert plan.plain and plan.embeddings is not None and plan.embeddings.shape == (4, 77, 8)


# --------------------------------------------------------------------- added UNet inputs (SDXL's slot)
def tiny_sdxl_unet():  # type: ignore[no-untyped-def]
    """An SDXL-shaped UNet ("text_time" added embedding: pooled text 16 + 6 time ids x 8), tiny."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(8)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=16 + 6 * 8,
        norm_num_groups=32,
    ).eval()


def test_added_inputs_reach_the_unet_as_the_sdxl_pipeline_passes_them(tiny_sd_dir, sd_models):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from nodeflow_nodes.sd.latents import NoiseLatents
    from nodeflow_nodes.sd.schedulers import Scheduler

    unet, vae = tiny_sdxl_unet(), sd_models.load_sd(str(tiny_sd_dir)).vae
    scheduler_config = {**EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                 steps_offset=1, timestep_spacing="leading").config, "_class_name": "EulerDiscreteScheduler"}
    g = torch.Generator().manual_seed(3)
    embeds, negative, pooled, negative_pooled = (torch.randn(1, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g),
                                                 torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=unet,
                                     scheduler=EulerDiscreteScheduler.from_config(scheduler_config), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled, height=64, width=64, num_inference_steps=4, guidance_scale=5.0,
                    output_type="latent", generator=torch.Generator("cpu").manual_seed(12)).images

    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    positive = Conditioning(embeds, added={"text_embeds": pooled, "time_ids": time_ids})
    negative_cond = Conditioning(negative, added={"text_embeds": negative_pooled, "time_ids": time_ids})
    state = Scheduler().run(CTX, scheduler_config, "default", 4, 0.0, unet)
    noise = NoiseLatents().run(CTX, unet, vae, state, 12, 64, 64, 1)
    got = Denoise().run(CTX, unet, noise, state, positive, negative_cond, 5.0, 0.0)

    assert torch.equal(got.samples, expected)


# --------------------------------------------------------------------- unrolled == loop, per feature
def _loop_and_unrolled(unet, latents, state, positive, negative, guidance=5.0):  # type: ignore[no-untyped-def]
    loop = Denoise().run(CTX, unet, latents, state, positive, negative, guidance, 0.0)
    for _ in range(state.remaining):
        pred = UNetStep().run(CTX, unet, latents, state, positive, negative)
        guided = Guidance().run(CTX, pred, guidance, 0.0)
        out = SchedulerStep().run(CTX, state, guided, latents)
        latents, state = out["next_latents"], out["next_scheduler"]
    return loop.samples, latents.samples


def _start(model_dir, sd_models, scheduler: str, steps: int = 4):  # type: ignore[no-untyped-def]
    from nodeflow_nodes.sd.latents import NoiseLatents
    from nodeflow_nodes.sd.schedulers import Scheduler

    parts = sd_models.load_sd(str(model_dir))
    state = Scheduler().run(CTX, parts.scheduler_config, scheduler, steps, 0.0, parts.unet)
    latents = NoiseLatents().run(CTX, parts.unet, parts.vae, state, 7, 64, 64, 1)
    return parts, state, latents


def _text_of(parts, prompt: str) -> Conditioning:  # type: ignore[no-untyped-def]
    from nodeflow_nodes.sd.text import TextEncode, Tokenize

    return TextEncode().run(CTX, parts.text_encoder, Tokenize().run(CTX, parts.tokenizer, prompt), 1)


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m"])
def test_unrolled_equals_loop_with_combined_area_and_mask_entries(scheduler, tiny_sd_dir, sd_models):
    from nodeflow.values import Mask

    parts, state, latents = _start(tiny_sd_dir, sd_models, scheduler)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 8:40, 16:48] = 0.7
    positive = ConditioningCombine().run(CTX, _text_of(parts, "a cat"), ConditioningSetArea().run(CTX, _text_of(parts, "a hat"), 0, 0, 32, 64, 0.8))
    positive = ConditioningCombine().run(CTX, positive, ConditioningSetMask().run(CTX, _text_of(parts, "a sun"), Mask(mask), 1.2, "bounds"))
    loop, unrolled = _loop_and_unrolled(parts.unet, latents, state, positive, _text_of(parts, "blurry"))
    assert torch.equal(loop, unrolled)


def test_unrolled_equals_loop_with_added_inputs(tiny_sd_dir, sd_models):
    from nodeflow_nodes.sd.latents import NoiseLatents
    from nodeflow_nodes.sd.schedulers import Scheduler

    unet, vae = tiny_sdxl_unet(), sd_models.load_sd(str(tiny_sd_dir)).vae
    state = Scheduler().run(CTX, sd_models.load_sd(str(tiny_sd_dir)).scheduler_config, "euler_a", 3, 0.0, unet)
    latents = NoiseLatents().run(CTX, unet, vae, state, 4, 64, 64, 2)
    ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    positive = Conditioning(torch.randn(1, 77, 32), added={"text_embeds": torch.randn(1, 16), "time_ids": ids})
    negative = Conditioning(torch.randn(1, 77, 32), added={"text_embeds": torch.randn(1, 16), "time_ids": ids})
    loop, unrolled = _loop_and_unrolled(unet, latents, state, positive, negative)
    assert torch.equal(loop, unrolled)


@pytest.mark.parametrize("kind", ["noise_mask", "extra_channels"])
def test_unrolled_equals_loop_for_inpainting_latents(kind, tiny_sd_dir, sd_models):
    parts, state, latents = _start(tiny_sd_dir, sd_models, "euler_a", steps=4)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 2:9] = 1.0
    original = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    if kind == "noise_mask":
        latents = dataclasses.replace(latents, noise_mask=NoiseMask(mask, original, torch.randn(1, 4, 16, 16)))
        unet = parts.unet
    else:  # an inpainting UNet: 4 + 1 + 4 input channels
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_config({**dict(parts.unet.config), "in_channels": 9}).eval()
        latents = dataclasses.replace(latents, concat=torch.cat([mask, original], dim=1))
    positive, negative = _text_of(parts, "a window"), _text_of(parts, "")
    loop, unrolled = _loop_and_unrolled(unet, latents, state, positive, negative)
    assert torch.equal(loop, unrolled)
    if kind == "noise_mask":  # after the last step the kept area is the original itself
        assert torch.equal(loop[mask.expand_as(loop) == 0], original[mask.expand_as(original) == 0])


def test_entries_and_inpainting_latents_survive_the_disk_cache_codec():
    from nodeflow.codec import NotSerializable, decode_value, encode_value
    from nodeflow.values import ControlApplication

    area = ConditioningSetArea().run(CTX, _text(2.0), 8, 0, 32, 64, 0.5)
    value = ConditioningCombine().run(CTX, dataclasses.replace(_text(1.0), added={"time_ids": torch.ones(1, 6)}), area)
    latents = Latents(torch.randn(1, 4, 8, 8), 0.18, None, 4, NoiseMask(torch.ones(1, 1, 8, 8), torch.zeros(1, 4, 8, 8)),
                      torch.zeros(1, 5, 8, 8))
    for original in (value, latents):
        tensors: dict[str, torch.Tensor] = {}
        back = decode_value(encode_value(original, tensors), tensors)
        assert type(back) is type(original)
    assert back.noise_mask.mask.shape == (1, 1, 8, 8) and back.vae_factor == 4  # type: ignore[union-attr]
    tensors = {}
    again = decode_value(encode_value(value, tensors), tensors)
    assert again.combined[0].area == (8, 0, 32, 64) and torch.equal(again.added["time_ids"], torch.ones(1, 6))
    with pytest.raises(NotSerializable):  # a ControlNet is a model: such values stay in memory
        encode_value(dataclasses.replace(value, controls=(ControlApplication(object(), torch.zeros(1)),)), {})
