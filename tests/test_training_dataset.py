"""The dataset node: what a folder of images and captions becomes, its errors, and its cache key."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from nodeflow_nodes.sd.dataset import ImageDataset
from PIL import Image

from nodeflow.files import PathResolver, stamp
from nodeflow.graph import parse_graph
from nodeflow.node import Context
from nodeflow.plan import make_plan
from nodeflow.training import dataset as datasets
from nodeflow.validate import check, validate


def _image(path: Path, size: tuple[int, int] = (8, 8), value: int = 200) -> Path:
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[size[1] // 4 : 3 * size[1] // 4, size[0] // 2] = value
    Image.fromarray(array).save(path)
    return path


def _graph(folder: str, caption: str = "a {token}") -> object:
    return parse_graph({"nodes": {"data": {"type": "sd.dataset", "inputs": {"folder": folder, "caption": caption}}}})


def _errors(registry, folder: Path, caption: str = "a {token}") -> list:
    return validate(_graph(folder.name, caption), registry, PathResolver.create([folder.parent]))


def test_a_folder_of_images_becomes_one_caption_per_image_with_txt_files_winning(tmp_path):
    _image(tmp_path / "b.png")
    _image(tmp_path / "a.jpg")
    (tmp_path / "b.txt").write_text("a drawing of {token}\nthe {token}\n")
    data = datasets.load(tmp_path, "a {token}")
    assert data.names == ("a.jpg", "b.png")
    assert datasets.captions(data, "<x>") == [("a <x>",), ("a drawing of <x>", "the <x>")]
    assert data.images[0].dtype == torch.uint8 and tuple(data.images[0].shape) == (3, 8, 8)


def test_pixels_are_the_centred_square_resized_to_the_model_size_in_minus_one_to_one(tmp_path):
    array = np.zeros((8, 16, 3), np.uint8)
    array[:, 4:12] = 255  # the centred 8x8 square is white, the sides black
    Image.fromarray(array).save(tmp_path / "wide.png")
    data = datasets.load(tmp_path, "x")
    pixels = datasets.pixels(data, native=8)
    assert pixels.shape == (1, 3, 8, 8) and torch.equal(pixels, torch.ones_like(pixels))
    assert datasets.pixels(data, native=4).shape == (1, 3, 4, 4)


def test_the_dataset_resolution_overrides_the_model_size(tmp_path):
    _image(tmp_path / "a.png", (16, 16))
    data = ImageDataset().run(Context("d", "sd.dataset", paths=PathResolver.create([tmp_path.parent])), folder=tmp_path.name,
                              caption="{token}", resolution=8, flip=True)
    assert data["count"] == 1 and data["dataset"].flip
    assert datasets.pixels(data["dataset"], native=64).shape == (1, 3, 8, 8)


def test_an_empty_folder_is_a_validation_error_naming_the_field(sd_registry, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no pictures here")
    errors = _errors(sd_registry, tmp_path / "empty")
    assert [(e.code, e.node, e.input) for e in errors] == [("invalid_value", "data", "folder")]
    assert "holds no images" in errors[0].message


def test_a_caption_file_without_its_image_is_a_validation_error(sd_registry, tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "b.txt").write_text("an orphan")
    (errors,) = [_errors(sd_registry, tmp_path)]
    assert len(errors) == 1 and "b.txt" in errors[0].message and errors[0].input == "folder"


def test_images_without_captions_and_no_template_are_a_validation_error(sd_registry, tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("captioned")
    errors = _errors(sd_registry, tmp_path, caption="")
    assert len(errors) == 1 and "b.png" in errors[0].message


def test_captions_for_every_image_need_no_template(sd_registry, tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("captioned")
    assert _errors(sd_registry, tmp_path, caption="") == []


def test_a_missing_folder_is_reported_once_as_a_missing_file(sd_registry, tmp_path):
    errors = validate(_graph("nowhere"), sd_registry, PathResolver.create([tmp_path]))
    assert [(e.code, e.input) for e in errors] == [("missing_file", "folder")]


def test_an_image_that_does_not_decode_fails_the_node_naming_the_file(tmp_path):
    _image(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(datasets.DatasetError, match="broken.png"):
        datasets.load(tmp_path, "{token}")


def test_an_empty_caption_file_is_an_error_naming_the_image(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("\n  \n")
    with pytest.raises(datasets.DatasetError, match="caption of a.png is empty"):
        datasets.load(tmp_path, "{token}")


def test_a_caption_with_a_token_placeholder_needs_a_token(tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(datasets.DatasetError, match="uses {token}"):
        datasets.captions(datasets.load(tmp_path, "a {token}"), "")


def test_the_dataset_stamp_changes_when_an_image_or_caption_is_added_edited_or_removed(tmp_path):
    _image(tmp_path / "a.png")
    before = stamp(tmp_path, "dataset")
    (tmp_path / "notes.md").write_text("not part of the dataset")
    assert stamp(tmp_path, "dataset") == before
    (tmp_path / "a.txt").write_text("a caption")
    with_caption = stamp(tmp_path, "dataset")
    assert with_caption != before
    (tmp_path / "a.txt").write_text("a longer caption")
    assert stamp(tmp_path, "dataset") != with_caption
    (tmp_path / "a.txt").unlink()
    _image(tmp_path / "b.png")
    assert stamp(tmp_path, "dataset") != before


def test_a_renamed_image_gives_a_new_stamp_even_with_the_same_size_and_time(tmp_path):
    path = _image(tmp_path / "a.png")
    before = stamp(tmp_path, "dataset")
    moved = path.rename(tmp_path / "c.png")
    os.utime(moved, ns=(moved.stat().st_atime_ns, moved.stat().st_mtime_ns))
    assert stamp(tmp_path, "dataset") != before


def test_the_planner_keys_the_dataset_node_on_its_folder(sd_registry, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    _image(folder / "a.png")
    paths = PathResolver.create([tmp_path])

    def key() -> str:
        checked = check(_graph("set"), sd_registry, paths)
        assert checked.ok, checked.errors
        return make_plan(checked, sd_registry, targets=["data"], paths=paths).keys["data"]

    before = key()
    assert key() == before
    _image(folder / "b.png")
    assert key() != before


# -- Images to Dataset: pictures made in the graph -------------------------------------------------------------
def test_images_to_dataset_rounds_to_8_bits_and_gives_every_picture_the_caption():
    from nodeflow_nodes.sd.dataset import ImagesToDataset

    from nodeflow.values import Image as ImageValue

    pixels = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    out = ImagesToDataset().run(Context("d", "sd.images_to_dataset"), ImageValue(pixels), "a digit\nthe {token}", 16, True)
    data = out["dataset"]
    assert out["count"] == 3 == len(data) and data.resolution == 16 and data.flip
    assert data.captions == ("a digit\nthe {token}",) * 3 and len(set(data.names)) == 3
    assert all(image.dtype == torch.uint8 and image.shape == (3, 5, 7) for image in data.images)
    assert torch.equal(torch.stack(data.images), (pixels * 255).round().to(torch.uint8))


def test_images_to_dataset_with_an_empty_caption_is_a_validation_error(sd_registry):
    graph = parse_graph({"nodes": {
        "img": {"type": "sd.load_image", "inputs": {"path": "x.png"}},
        "data": {"type": "sd.images_to_dataset", "inputs": {"images": {"node": "img", "output": "image"}, "caption": " \n "}}}})
    errors = [e for e in validate(graph, sd_registry, PathResolver.create([])) if e.node == "data"]
    assert [(e.code, e.input) for e in errors] == [("invalid_value", "caption")]


def test_class_images_drawn_in_the_graph_train_as_the_same_pictures_read_from_a_folder(sd_registry, sd_models, tmp_path):
    # DreamBooth's prior preservation with class images the model draws in the same graph: the training equals
    # one on those pictures written as PNGs and read back by Image Dataset
    import json

    from nodeflow.cache import Cache
    from nodeflow.executor import Executor

    doc = json.loads((Path(__file__).resolve().parent.parent / "workflows" / "train_lora.json").read_text())
    nodes = doc["nodes"]
    out = lambda node, name: {"node": node, "output": name}  # noqa: E731
    nodes["class_prompt"] = {"type": "sd.tokenize", "inputs": {"tokenizer": out("load", "tokenizer"), "text": "a handwritten digit"}}
    nodes["class_encode"] = {"type": "sd.text_encode", "inputs": {"text_encoder": out("load", "text_encoder"), "tokens": out("class_prompt", "tokens")}}
    nodes["class_scheduler"] = {"type": "sd.scheduler", "inputs": {**nodes["scheduler"]["inputs"], "steps": 4}}
    nodes["class_noise"] = {"type": "sd.noise_latents", "inputs": {**nodes["noise"]["inputs"], "batch": 3, "seed": 7,
                                                                    "scheduler": out("class_scheduler", "scheduler")}}
    nodes["class_negative"] = {"type": "sd.text_encode", "inputs": {"text_encoder": out("load", "text_encoder"), "tokens": out("negative", "tokens")}}
    nodes["class_denoise"] = {"type": "sd.denoise", "inputs": {"unet": out("load", "unet"), "latents": out("class_noise", "latents"),
                                                                "scheduler": out("class_scheduler", "scheduler"),
                                                                "positive": out("class_encode", "conditioning"),
                                                                "negative": out("class_negative", "conditioning"), "guidance_scale": 7.5}}
    nodes["class_decode"] = {"type": "sd.vae_decode", "inputs": {"vae": out("load", "vae"), "latents": out("class_denoise", "denoised")}}
    nodes["class_save"] = {"type": "sd.save_image", "inputs": {"images": out("class_decode", "image"), "prefix": "class"}}
    nodes["prior"] = {"type": "sd.images_to_dataset", "inputs": {"images": out("class_decode", "image"), "caption": "a handwritten digit"}}
    nodes["train"]["inputs"].update(steps=3, sample_every=0, save_every=0)
    paths = PathResolver.create([Path(__file__).resolve().parent.parent / "workflows", tmp_path])
    drawn = Executor(sd_registry, Cache(), sd_models).run(parse_graph(doc), output_dir=tmp_path / "drawn", targets=["train", "class_save", "prior"],
                                                          paths=paths)
    assert drawn.status == "succeeded", drawn.errors
    assert drawn.values["prior"]["count"] == 3
    pictures = [o["path"] for o in drawn.outputs if Path(o["path"]).name.startswith("class")]
    assert len(pictures) == 3

    folder = tmp_path / "class_images"
    folder.mkdir()
    for path in pictures:
        Path(path).rename(folder / Path(path).name)
    nodes["prior"] = {"type": "sd.dataset", "inputs": {"folder": str(folder), "caption": "a handwritten digit"}}
    read = Executor(sd_registry, Cache(), sd_models).run(parse_graph(doc), output_dir=tmp_path / "read", targets=["train"], paths=paths)
    assert read.status == "succeeded", read.errors
    assert read.values["train"]["loss"] == drawn.values["train"]["loss"]
    ours, theirs = drawn.values["train"]["lora"], read.values["train"]["lora"]
    assert ours.unet.keys() == theirs.unet.keys()
    assert all(torch.equal(ours.unet[k].up, theirs.unet[k].up) and torch.equal(ours.unet[k].down, theirs.unet[k].down) for k in ours.unet)
    del nodes["train"]["inputs"]["prior"]
    alone = Executor(sd_registry, Cache(), sd_models).run(parse_graph(doc), output_dir=tmp_path / "alone", targets=["train"], paths=paths)
    assert alone.status == "succeeded", alone.errors
    assert alone.values["train"]["loss"] != drawn.values["train"]["loss"]  # the class images took part
