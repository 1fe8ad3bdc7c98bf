"""SD 2.x and SDXL (base, refiner): family detection, folders and single files loading to the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from models_families import (
    XL_POOLED,
    refiner_checkpoint,
    save_refiner,
    save_sd2,
    save_sdxl,
    sd2_checkpoint,
    sdxl_checkpoint,
    tiny_refiner,
    tiny_sd2,
    tiny_sdxl,
)
from models_tiny import ldm_checkpoint, tiny_text_encoder, tiny_unet, tiny_vae
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodeflow.models import DEFAULT_MODEL, ModelStore, SDComponents
from nodeflow.models.families import ModelFamily, checkpoint_family, folder_family
from nodeflow.models.single_file import CONFIGS_DIR, CheckpointError, fit_configs, load_single_file, skeleton_for
from nodeflow.models.store import pipeline_scheduler_config

SD2, SDXL, REFINER = ModelFamily.SD2, ModelFamily.SDXL, ModelFamily.SDXL_REFINER
BUILD = {SD2: (tiny_sd2, save_sd2, sd2_checkpoint), SDXL: (tiny_sdxl, save_sdxl, sdxl_checkpoint), REFINER: (tiny_refiner, save_refiner, refiner_checkpoint)}
SLOTS = {SD2: ("unet", "vae", "text_encoder"), SDXL: ("unet", "vae", "text_encoder", "text_encoder_2"), REFINER: ("unet", "vae", "text_encoder_2")}
CASES = [(f, s) for f, slots in SLOTS.items() for s in slots]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[ModelFamily, dict]:
    """Per family: the modules, their diffusers folder, the original-layout dict and its .safetensors file."""
    root = tmp_path_factory.mktemp("families")
    made = {}
    for family, (build, save, original) in BUILD.items():
        parts = build()
        checkpoint = original(parts)
        path = root / f"tiny-{family.value}.safetensors"
        save_file(checkpoint, str(path))
        made[family] = {"parts": parts, "folder": save(parts, root / family.value), "checkpoint": checkpoint, "file": path}
    return made


@pytest.fixture(scope="module")
def loaded(tiny: dict) -> dict[tuple[ModelFamily, str], SDComponents]:
    """Each family loaded from its folder (through the store) and from its single file."""
    store = ModelStore(device="cpu")
    out = {}
    for family, made in tiny.items():
        out[family, "folder"] = store.load_sd(made["folder"])
        out[family, "file"] = store.load_sd(made["file"])
    return out


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- family detection ------------------------------------------------------------------
@pytest.mark.parametrize("family", [SD2, SDXL, REFINER])
def test_folder_family_is_told_from_model_index_and_configs(tiny: dict, family: ModelFamily) -> None:
    assert folder_family(tiny[family]["folder"]) is family


def test_sd1_folders_are_sd1(tiny_sd_dir: Path) -> None:
    assert folder_family(tiny_sd_dir) is ModelFamily.SD1
    assert folder_family(DEFAULT_MODEL) is ModelFamily.SD1


@pytest.mark.parametrize("family", [SD2, SDXL, REFINER])
def test_checkpoint_family_is_told_from_the_text_encoder_layout(tiny: dict, family: ModelFamily) -> None:
    assert checkpoint_family(tiny[family]["checkpoint"]) is family


def test_sd1_checkpoint_is_sd1() -> None:
    assert checkpoint_family(ldm_checkpoint(tiny_unet(), tiny_vae(), tiny_text_encoder())) is ModelFamily.SD1


@pytest.mark.parametrize("family", [SD2, SDXL, REFINER])
def test_loaded_components_carry_the_family(loaded: dict, family: ModelFamily) -> None:
    assert loaded[family, "folder"].family is family and loaded[family, "file"].family is family


def test_the_refiner_has_only_the_second_text_encoder(loaded: dict) -> None:
    for how in ("folder", "file"):
        parts = loaded[REFINER, how]
        assert parts.tokenizer is None and parts.text_encoder is None
        assert isinstance(parts.text_encoder_2, CLIPTextModelWithProjection) and parts.tokenizer_2 is not None


# -- single file == folder ---------------------------------------------------------------
@pytest.mark.parametrize(("family", "slot"), CASES)
def test_single_file_component_has_the_folder_weights(loaded: dict, family: ModelFamily, slot: str) -> None:
    assert _same_weights(getattr(loaded[family, "file"], slot), getattr(loaded[family, "folder"], slot))


@pytest.mark.parametrize(("family", "slot"), CASES)
def test_loaded_component_has_the_original_weights(loaded: dict, tiny: dict, family: ModelFamily, slot: str) -> None:
    assert _same_weights(getattr(loaded[family, "file"], slot), tiny[family]["parts"][slot])


def _added_cond(family: ModelFamily) -> dict | None:
    if not family.is_sdxl:
        return None
    gen = torch.Generator().manual_seed(3)
    ids = 6 if family is SDXL else 5
    return {"text_embeds": torch.randn(2, XL_POOLED, generator=gen), "time_ids": torch.rand(2, ids, generator=gen) * 64}


@pytest.mark.parametrize("family", [SD2, SDXL, REFINER])
def test_single_file_unet_predicts_exactly_like_the_folder_unet(loaded: dict, family: ModelFamily) -> None:
    folder, file = loaded[family, "folder"].unet, loaded[family, "file"].unet
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 8, 8, generator=gen)
    text = torch.randn(2, 77, folder.config.cross_attention_dim, generator=gen)
    with torch.no_grad():
        a = folder(sample, 500, text, added_cond_kwargs=_added_cond(family)).sample
        b = file(sample, 500, text, added_cond_kwargs=_added_cond(family)).sample
    assert torch.equal(a, b)


@pytest.mark.parametrize(("family", "slot"), [c for c in CASES if c[1].startswith("text_encoder")])
def test_single_file_text_encoder_encodes_exactly_like_the_folder(loaded: dict, family: ModelFamily, slot: str) -> None:
    folder, file = loaded[family, "folder"], loaded[family, "file"]
    tokenizer = getattr(folder, slot.replace("text_encoder", "tokenizer"))
    ids = tokenizer("a lighthouse at dusk", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, getattr(file, slot.replace("text_encoder", "tokenizer"))("a lighthouse at dusk", padding="max_length", max_length=77, return_tensors="pt").input_ids)
    with torch.no_grad():
        a = getattr(folder, slot)(ids, output_hidden_states=True)
        b = getattr(file, slot)(ids, output_hidden_states=True)
    assert torch.equal(a.hidden_states[-2], b.hidden_states[-2]) and torch.equal(a[0], b[0])
    if slot == "text_encoder_2":
        assert torch.equal(a.text_embeds, b.text_embeds)  # the pooled, projected embedding SDXL conditions on


def test_sd2_drops_the_unused_last_openclip_block(tiny: dict, loaded: dict) -> None:
    blocks = {k.split(".")[4] for k in tiny[SD2]["checkpoint"] if ".transformer.resblocks." in k}
    assert len(blocks) == 3  # the file holds one block more than the encoder runs
    assert loaded[SD2, "file"].text_encoder.config.num_hidden_layers == 2


def test_openclip_tokenizers_pad_with_exclamation_mark_and_clip_l_with_end_of_text(loaded: dict) -> None:
    for how in ("folder", "file"):
        assert loaded[SD2, how].tokenizer.pad_token_id == 0
        assert loaded[SDXL, how].tokenizer_2.pad_token_id == 0 and loaded[REFINER, how].tokenizer_2.pad_token_id == 0
        assert loaded[SDXL, how].tokenizer.pad_token_id == 49407


# -- configs: prediction type, scheduler, pipeline options ------------------------------------
def test_sd2_single_file_reads_as_v_prediction_768_by_default(loaded: dict) -> None:
    parts = loaded[SD2, "file"]
    assert parts.info["variant"] == "sd2-768-v" and parts.prediction_type == "v_prediction"
    assert parts.scheduler_config["_class_name"] == "DDIMScheduler" and parts.unet.config.sample_size == 96


def test_sd2_single_file_told_epsilon_takes_the_512_skeleton(tiny: dict) -> None:
    parts = load_single_file(tiny[SD2]["file"], prediction_type="epsilon")
    assert parts.info["variant"] == "sd2-512" and parts.prediction_type == "epsilon"
    assert parts.scheduler_config["_class_name"] == "PNDMScheduler" and parts.unet.config.sample_size == 64


def test_sd2_inpainting_checkpoint_takes_the_512_epsilon_skeleton(tiny: dict) -> None:
    first = "model.diffusion_model.input_blocks.0.0.weight"
    inpaint = {**tiny[SD2]["checkpoint"], first: torch.zeros(64, 9, 3, 3)}
    assert skeleton_for(SD2, inpaint) == "sd2-512"


def test_folder_prediction_type_comes_from_its_scheduler_config(tiny: dict, tmp_path: Path) -> None:
    folder = save_sd2(tiny[SD2]["parts"], tmp_path / "eps", prediction_type="epsilon")
    assert ModelStore(device="cpu").load_sd(folder).prediction_type == "epsilon"


def test_a_prediction_type_override_is_its_own_store_entry(tiny: dict) -> None:
    store = ModelStore(device="cpu")
    model = store.load_sd(tiny[SDXL]["folder"])
    forced = store.load_sd(tiny[SDXL]["folder"], prediction_type="v_prediction")
    assert (model.prediction_type, forced.prediction_type) == ("epsilon", "v_prediction") and store.loads == 2


def test_an_unknown_prediction_type_is_refused(tiny: dict) -> None:
    with pytest.raises(ValueError, match="prediction_type.*'vpred'"):
        ModelStore(device="cpu").load_sd(tiny[SDXL]["folder"], prediction_type="vpred")


def test_v_pred_marker_key_makes_a_single_file_v_prediction(tiny: dict, tmp_path: Path) -> None:
    path = tmp_path / "marked.safetensors"
    save_file({**tiny[SDXL]["checkpoint"], "v_pred": torch.tensor([])}, str(path))
    assert load_single_file(path).prediction_type == "v_prediction"


@pytest.mark.parametrize(("family", "options"), [
    (SDXL, {"force_zeros_for_empty_prompt": True, "requires_aesthetics_score": False}),
    (REFINER, {"force_zeros_for_empty_prompt": False, "requires_aesthetics_score": True}),
    (SD2, {}),
])
def test_pipeline_options_are_recorded_as_diffusers_reads_them(loaded: dict, family: ModelFamily, options: dict) -> None:
    assert loaded[family, "folder"].pipeline_config == options and loaded[family, "file"].pipeline_config == options


def test_sdxl_scheduler_config_is_the_one_the_sdxl_pipeline_uses(tiny: dict, loaded: dict) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny[SDXL]["folder"]), local_files_only=True, low_cpu_mem_usage=False)
    assert loaded[SDXL, "folder"].scheduler_config == dict(pipe.scheduler.config)
    assert loaded[SDXL, "file"].scheduler_config == dict(pipe.scheduler.config)


def test_sdxl_scheduler_configs_keep_legacy_keys_as_the_sdxl_pipelines_do() -> None:
    raw = {"_class_name": "DDIMScheduler", "steps_offset": 0, "clip_sample": True}
    kept = pipeline_scheduler_config(raw, fix_legacy=False)
    assert (kept["steps_offset"], kept["clip_sample"]) == (0, True)


def test_single_file_sdxl_loads_in_fp16(tiny: dict) -> None:
    parts = load_single_file(tiny[SDXL]["file"], dtype="fp16")
    modules = (parts.unet, parts.vae, parts.text_encoder, parts.text_encoder_2)
    assert {p.dtype for m in modules for p in m.parameters()} == {torch.float16}


# -- strict loading ------------------------------------------------------------------------
@pytest.mark.parametrize(("gone", "message"), [
    ("conditioner.embedders.1.model.transformer.resblocks.1.mlp.c_fc.weight", "second text encoder.*missing.*encoder.layers.1.mlp.fc1.weight"),
    ("conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", "the text encoder.*missing.*layers.0.self_attn.q_proj.weight"),
    ("model.diffusion_model.label_emb.0.2.weight", "UNet.*label_emb.0.2.weight"),
    ("model.diffusion_model.middle_block.1.transformer_blocks.1.attn2.to_v.weight", "UNet.*mid_block.attentions.0.transformer_blocks.1.attn2.to_v.weight"),
])
def test_truncated_sdxl_checkpoint_is_an_error_naming_the_tensor(tiny: dict, tmp_path: Path, gone: str, message: str) -> None:
    path = tmp_path / "truncated.safetensors"
    assert gone in tiny[SDXL]["checkpoint"]
    save_file({k: v for k, v in tiny[SDXL]["checkpoint"].items() if k != gone}, str(path))
    with pytest.raises(CheckpointError, match="truncated.safetensors.*" + message):
        load_single_file(path)


# -- the shipped skeletons are the real models -------------------------------------------------
def _real_shaped(skeleton: str) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """A checkpoint with the real model's shapes (on the meta device: no memory) and the skeleton's configs."""
    folder = CONFIGS_DIR / skeleton
    configs = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/config.json")}
    parts = {}
    with torch.device("meta"):
        parts["unet"] = UNet2DConditionModel.from_config(configs["unet"])
        parts["vae"] = AutoencoderKL.from_config(configs["vae"])
        if "text_encoder" in configs:
            parts["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True))
        if "text_encoder_2" in configs:
            parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"), local_files_only=True))
    write = {"sd2-512": sd2_checkpoint, "sd2-768-v": sd2_checkpoint, "sdxl": sdxl_checkpoint, "sdxl-refiner": refiner_checkpoint}[skeleton]
    return write(parts), configs


@pytest.mark.parametrize(("skeleton", "family", "diffusers_type"), [
    ("sd2-768-v", SD2, "v2"), ("sd2-512", SD2, "v2"), ("sdxl", SDXL, "xl_base"), ("sdxl-refiner", REFINER, "xl_refiner"),
])
def test_real_shaped_checkpoint_is_told_as_diffusers_tells_it(skeleton: str, family: ModelFamily, diffusers_type: str) -> None:
    checkpoint, _ = _real_shaped(skeleton)
    assert infer_diffusers_model_type(checkpoint) == diffusers_type
    assert checkpoint_family(checkpoint) is family


@pytest.mark.parametrize("skeleton", ["sd2-768-v", "sdxl", "sdxl-refiner"])
def test_real_shaped_checkpoint_fits_its_shipped_skeleton_exactly(skeleton: str) -> None:
    checkpoint, configs = _real_shaped(skeleton)
    fitted = fit_configs(checkpoint)
    for part, fields in fitted.items():
        differ = {k: (v, configs[part].get(k)) for k, v in fields.items() if configs[part].get(k) != v}
        assert not differ, f"{part}: {differ}"


def test_load_model_node_gives_the_refiner_with_its_family_on_the_clip(tiny: dict) -> None:
    from nodeflow_nodes.sd.load import LoadModel

    from nodeflow.node import Context

    ctx = Context(node_id="1", node_type="sd.load_model", model_store=ModelStore(device="cpu"))
    out = LoadModel().run(ctx, model=str(tiny[REFINER]["folder"]), dtype="fp32", device="cpu")

    assert out["clip"].family == "sdxl_refiner" and out["clip"].pipeline_config["requires_aesthetics_score"] is True
    assert out["tokenizer"] is None and out["text_encoder"] is None and out["clip"].text_encoder_2 is not None


@pytest.mark.parametrize("family", [SD2, SDXL, REFINER])
def test_probe_tells_the_family_of_folders_and_files_without_loading(tiny: dict, family: ModelFamily) -> None:
    from nodeflow.models.families import probe_family

    assert probe_family(tiny[family]["folder"]) is family and probe_family(tiny[family]["file"]) is family


def test_probe_gives_none_for_what_it_cannot_tell(tmp_path: Path) -> None:
    from nodeflow.models.families import probe_family

    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, str(lora))
    (tmp_path / "model.ckpt").write_bytes(b"not opened")
    assert probe_family(lora) is None and probe_family(tmp_path / "model.ckpt") is None and probe_family(tmp_path / "empty") is None


@pytest.mark.usefixtures("sd_one_thread")
@pytest.mark.parametrize("how", ["folder", "file"])
def test_sd2_v_prediction_model_runs_the_sd_workflow_with_diffusers_pixels(tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    # SD 2.x needs no node of its own: the txt2img workflow on its folder or single file
    # gives StableDiffusionPipeline's pixels (v-prediction through the scheduler config).
    import numpy as np
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from nodeflow.cli import main

    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny[SD2]["folder"]), local_files_only=True, safety_checker=None, requires_safety_checker=False, low_cpu_mem_usage=False
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a red cube", negative_prompt="blurry", num_inference_steps=3, guidance_scale=6.5, width=64, height=64,
                    generator=torch.Generator("cpu").manual_seed(1234)).images[0]
    model = tiny[SD2]["folder" if how == "folder" else "file"]
    settings = {"model": model, "prompt": "a red cube", "negative_prompt": "blurry", "seed": 1234, "steps": 3,
                "guidance_scale": 6.5, "width": 64, "height": 64, "scheduler": "DDIMScheduler"}
    args = ["run", str(Path(__file__).resolve().parent.parent / "workflows" / "txt2img.json"), "--out", str(tmp_path), "--json", "--device", "cpu", "--threads", "1"]
    code = main(args + [a for k, v in settings.items() for a in ("--set", f"{k}={v}")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["errors"]
    with Image.open(report["outputs"][0]) as picture:
        assert np.array_equal(np.array(picture.convert("RGB")), np.array(expected))
