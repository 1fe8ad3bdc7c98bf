"""The SD nodes one by one: each behaviour the pack promises, on the tiny random model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nodeflow_nodes.sd.images import GRAPH_CHUNK, LoadImage
from nodeflow_nodes.sd.latents import Img2ImgInit, NoiseLatents
from nodeflow_nodes.sd.sampling import SchedulerStep, UNetStep
from nodeflow_nodes.sd.schedulers import FRIENDLY, Scheduler, make_scheduler, scheduler_name_problem
from nodeflow_nodes.sd.text import TextEncode, Tokenize
from PIL import Image as PILImage

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.files import PathResolver
from nodeflow.node import Context
from nodeflow.values import Image, Latents, NoisePred

pytestmark = pytest.mark.usefixtures("sd_one_thread")


def ctx(node_id: str = "n", **kwargs: object) -> Context:
    return Context(node_id, "test", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sd(tiny_sd_dir, sd_models):  # type: ignore[no-untyped-def]
    return sd_models.load_sd(str(tiny_sd_dir))


@pytest.fixture(scope="module")
def pipe(sd_reference):  # type: ignore[no-untyped-def]
    return sd_reference("DDIMScheduler")


def _state(sd, name: str = "ddim", steps: int = 4):  # type: ignore[no-untyped-def]
    return Scheduler().run(ctx(), sd.scheduler_config, name, steps, 0.0, sd.unet)


# -- text -----------------------------------------------------------------------------
def test_tokenize_pads_to_77_ids_and_reports_no_truncation_for_a_short_prompt(sd):
    tokens = Tokenize().run(ctx(), sd.tokenizer, "a cat")
    assert tokens.ids.shape == (1, 77) and tokens.attention_mask.shape == (1, 77)
    assert tokens.truncated == ("",)


def test_tokenize_with_truncate_reports_the_text_cut_off_by_the_77_token_limit(sd):
    tokens = Tokenize().run(ctx(), sd.tokenizer, " ".join(["cat"] * 80) + " zebra", truncate=True)
    assert tokens.ids.shape == (1, 77)
    assert tokens.truncated[0].endswith("zebra") and tokens.truncated[0].count("cat") == 80 - 75


def test_text_encode_equals_diffusers_encode_prompt(sd, pipe):
    tokens = Tokenize().run(ctx(), sd.tokenizer, "a small boat")
    ours = TextEncode().run(ctx(), sd.text_encoder, tokens, 1).embeddings
    theirs, _ = pipe.encode_prompt("a small boat", "cpu", 1, False)
    assert torch.equal(ours, theirs)


def test_clip_skip_2_is_the_penultimate_layer_through_the_final_layer_norm(sd):
    # diffusers' own clip_skip path reaches for .text_model, which transformers 5 removed;
    # this is its formula (hidden_states[-(clip_skip + 1)] then final_layer_norm) by hand.
    tokens = Tokenize().run(ctx(), sd.tokenizer, "a small boat")
    ours = TextEncode().run(ctx(), sd.text_encoder, tokens, 2).embeddings
    with torch.no_grad():
        hidden = sd.text_encoder(tokens.ids, output_hidden_states=True).hidden_states[-2]
        expected = sd.text_encoder.final_layer_norm(hidden)
    assert torch.equal(ours, expected)
    assert not torch.equal(ours, TextEncode().run(ctx(), sd.text_encoder, tokens, 1).embeddings)


def test_an_empty_negative_prompt_encodes_like_diffusers_unconditional_branch(sd, pipe):
    ours = TextEncode().run(ctx(), sd.text_encoder, Tokenize().run(ctx(), sd.tokenizer, ""), 1).embeddings
    _, uncond = pipe.encode_prompt("a small boat", "cpu", 1, True, negative_prompt=None)
    assert torch.equal(ours, uncond)


# -- schedulers -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FRIENDLY))
def test_each_friendly_scheduler_name_makes_its_diffusers_class(sd, name):
    if scheduler_name_problem(name):  # a class whose package is not installed is refused by name instead
        with pytest.raises(ValueError, match="needs the .* package"):
            make_scheduler(sd.scheduler_config, name)
        return
    assert type(make_scheduler(sd.scheduler_config, name)).__name__ == FRIENDLY[name][0]


def test_a_diffusers_class_name_and_default_are_accepted_as_scheduler_names(sd):
    assert type(make_scheduler(sd.scheduler_config, "KDPM2DiscreteScheduler")).__name__ == "KDPM2DiscreteScheduler"
    assert type(make_scheduler(sd.scheduler_config, "default")).__name__ == sd.scheduler_config["_class_name"]


def test_an_unknown_scheduler_name_is_an_error_listing_the_friendly_names(sd):
    with pytest.raises(ValueError, match="unknown scheduler 'karras9'.*dpmpp_2m.*euler_a"):
        make_scheduler(sd.scheduler_config, "karras9")


def test_a_scheduler_step_leaves_its_input_state_unchanged(sd):
    state = _state(sd, "dpmpp_2m")
    snapshot = copy.deepcopy(state.scheduler.__dict__)
    latents = Latents(torch.randn(1, 4, 16, 16), 0.18215)
    prediction = NoisePred(torch.randn(1, 4, 16, 16))

    first = SchedulerStep().run(ctx(), state, prediction, latents)
    second = SchedulerStep().run(ctx(), state, prediction, latents)

    assert torch.equal(first["next_latents"].samples, second["next_latents"].samples)
    assert state.scheduler.model_outputs == snapshot["model_outputs"] and state.scheduler.step_index is None
    assert first["next_scheduler"].index == 1 and first["next_scheduler"].scheduler.step_index == 1


def test_a_scheduler_step_refuses_an_unguided_prediction_pair(sd):
    pair = NoisePred(torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="Guidance node"):
        SchedulerStep().run(ctx(), _state(sd), pair, Latents(torch.zeros(1, 4, 16, 16)))


def test_the_unet_step_makes_both_predictions_from_one_batch_2_call(sd):
    calls: list[int] = []
    hook = sd.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        cond = TextEncode().run(ctx(), sd.text_encoder, Tokenize().run(ctx(), sd.tokenizer, "x"), 1)
        pred = UNetStep().run(ctx(), sd.unet, Latents(torch.randn(1, 4, 16, 16)), _state(sd), cond, cond)
    finally:
        hook.remove()
    assert calls == [2]
    assert pred.uncond is not None and torch.equal(pred.cond, pred.uncond)


# -- latents --------------------------------------------------------------------------
def test_noise_latents_are_the_seeded_cpu_normal_draw_times_init_noise_sigma(sd):
    state = _state(sd, "euler")
    latents = NoiseLatents().run(ctx(), sd.unet, sd.vae, state, 9, 64, 32, 2)
    expected = torch.randn((2, 4, 8, 16), generator=torch.Generator("cpu").manual_seed(9)) * state.scheduler.init_noise_sigma
    assert torch.equal(latents.samples, expected)
    assert latents.scaling_factor == sd.vae.config.scaling_factor


def test_noise_latents_refuse_a_size_that_is_not_a_multiple_of_the_vae_factor(sd):
    with pytest.raises(ValueError, match="multiples of 4"):
        NoiseLatents().run(ctx(), sd.unet, sd.vae, _state(sd), 0, 66, 64, 1)


def test_img2img_init_keeps_the_last_steps_times_strength_timesteps(sd):
    state = _state(sd, "ddim", steps=10)
    out = Img2ImgInit().run(ctx(), Latents(torch.zeros(1, 4, 16, 16), 0.18215, None), state, 0.3, 5)
    assert out["remaining"].remaining == 3
    assert torch.equal(out["remaining"].timesteps[out["remaining"].index :], state.timesteps[7:])


def test_img2img_init_refuses_a_strength_that_leaves_no_step(sd):
    with pytest.raises(ValueError, match="no step to run"):
        Img2ImgInit().run(ctx(), Latents(torch.zeros(1, 4, 16, 16)), _state(sd, steps=4), 0.2, 5)


# -- images ---------------------------------------------------------------------------
def _save_graph(image_path: Path) -> dict:
    return {"nodes": {
        "img": {"type": "sd.load_image", "inputs": {"path": str(image_path)}},
        "save": {"type": "sd.save_image", "inputs": {"images": {"node": "img", "output": "image"}, "prefix": "p"}},
    }}


def _picture(path: Path, seed: int) -> Path:
    PILImage.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 12, 3), dtype=np.uint8)).save(path)
    return path


def test_save_image_writes_the_exact_pixels_with_the_graph_in_a_png_text_chunk(sd_registry, tmp_path):
    source = _picture(tmp_path / "in.png", 1)
    result = Executor(sd_registry, Cache()).run(_save_graph(source), output_dir=tmp_path / "out")

    (saved,) = [Path(o["path"]) for o in result.outputs]
    with PILImage.open(saved) as png, PILImage.open(source) as original:
        assert np.array_equal(np.array(png), np.array(original))
        assert json.loads(png.text[GRAPH_CHUNK])["nodes"]["img"]["inputs"]["path"] == str(source)
    assert saved.name == "p_save_00000.png"


def test_saving_a_different_image_never_overwrites_an_earlier_file(sd_registry, tmp_path):
    executor = Executor(sd_registry, Cache())
    first = executor.run(_save_graph(_picture(tmp_path / "a.png", 1)), output_dir=tmp_path / "out")
    kept = Path(first.outputs[0]["path"]).read_bytes()

    second = executor.run(_save_graph(_picture(tmp_path / "b.png", 2)), output_dir=tmp_path / "out")

    assert Path(second.outputs[0]["path"]).name == "p_save_00001.png"
    assert Path(first.outputs[0]["path"]).read_bytes() == kept


def test_saving_the_same_image_again_in_a_new_process_reuses_its_file(sd_registry, tmp_path):
    graph = _save_graph(_picture(tmp_path / "a.png", 1))
    Executor(sd_registry, Cache()).run(graph, output_dir=tmp_path / "out")

    again = Executor(sd_registry, Cache()).run(graph, output_dir=tmp_path / "out")

    assert again.nodes["save"].status == "ran"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p_save_00000.png"]


def test_a_save_into_another_output_folder_writes_again(sd_registry, tmp_path):
    executor = Executor(sd_registry, Cache())
    graph = _save_graph(_picture(tmp_path / "a.png", 1))
    executor.run(graph, output_dir=tmp_path / "one")

    other = executor.run(graph, output_dir=tmp_path / "two")

    assert other.nodes["save"].status == "ran" and (tmp_path / "two" / "p_save_00000.png").is_file()


def test_preview_image_writes_into_previews_and_reports_kind_preview(sd_registry, tmp_path):
    graph = {"nodes": {
        "img": {"type": "sd.load_image", "inputs": {"path": str(_picture(tmp_path / "a.png", 1))}},
        "show": {"type": "sd.preview_image", "inputs": {"images": {"node": "img", "output": "image"}}},
    }}
    result = Executor(sd_registry, Cache()).run(graph, output_dir=tmp_path / "out")
    assert [(Path(o["path"]).parent.name, o["kind"]) for o in result.outputs] == [("previews", "preview")]


def test_load_image_reruns_when_the_file_changes(tmp_path, sd_registry):
    path = _picture(tmp_path / "a.png", 1)
    graph = {"nodes": {"img": {"type": "sd.load_image", "inputs": {"path": str(path)}},
                       "show": {"type": "core.show", "inputs": {"value": {"node": "img", "output": "width"}}}}}
    executor = Executor(sd_registry, Cache())
    assert executor.run(graph).nodes["img"].status == "ran"
    assert executor.run(graph).nodes["show"].status == "cached"
    _picture(path, 2)
    assert executor.run(graph).nodes["img"].status == "ran"


def test_load_image_finds_relative_paths_in_the_resolver_folders(tmp_path):
    _picture(tmp_path / "pic.png", 1)
    out = LoadImage().run(ctx(paths=PathResolver.create([tmp_path])), "pic.png")
    assert (out["width"], out["height"]) == (12, 8) and isinstance(out["image"], Image)


def test_load_image_names_the_folders_it_searched_for_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.png.*not found"):
        LoadImage().run(ctx(), "nope.png")
