"""The server's model listing tells each checkpoint's family from its header, once per file stamp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_headers import header_checkpoint

from nodeflow.files import kind_folders
from nodeflow.server.model_routes import ModelCatalogue


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for family in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        header_checkpoint(root / "checkpoints" / f"{family}.safetensors", family)
    (root / "checkpoints" / "old.ckpt").write_bytes(b"pickle is never opened")
    (root / "loras").mkdir()
    header_checkpoint(root / "loras" / "style.safetensors", "sd1")
    return root


def test_checkpoints_are_listed_with_their_family_and_its_label(models):
    listing = ModelCatalogue(kind_folders([models])).listing()
    rows = {row.name: (row.family, row.family_label) for row in listing.kinds["checkpoint"]}
    assert rows == {"sd1.safetensors": ("sd1", "SD 1.x"), "sd2.safetensors": ("sd2", "SD 2.x"),
                    "sdxl.safetensors": ("sdxl", "SDXL"), "sdxl_refiner.safetensors": ("sdxl_refiner", "SDXL refiner"),
                    "old.ckpt": (None, None)}
    # only checkpoints have a family: a LoRA is not probed
    assert [(row.name, row.family) for row in listing.kinds["lora"]] == [("style.safetensors", None)]


def test_the_family_is_read_once_per_file_stamp(models, monkeypatch):
    import nodeflow.models.families as families

    probed: list[str] = []
    real = families.probe_family
    monkeypatch.setattr(families, "probe_family", lambda path: probed.append(Path(path).name) or real(path))
    catalogue = ModelCatalogue(kind_folders([models]))
    catalogue.listing("checkpoint")
    catalogue.listing("checkpoint")
    assert sorted(probed) == sorted(["sd1.safetensors", "sd2.safetensors", "sdxl.safetensors", "sdxl_refiner.safetensors",
                                     "old.ckpt"])
    # the file is replaced under the same name (new size and mtime): read again, new family
    target = models / "checkpoints" / "sd1.safetensors"
    header_checkpoint(target, "sdxl")
    os.utime(target, ns=(1, 1))
    probed.clear()
    rows = {row.name: row.family for row in catalogue.listing("checkpoint").kinds["checkpoint"]}
    assert probed == ["sd1.safetensors"] and rows["sd1.safetensors"] == "sdxl"
