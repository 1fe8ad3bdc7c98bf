"""Issue 16: models load in the requested dtype, and ``nodeflow run --json`` reports load time apart."""

from __future__ import annotations

import json

import pytest
import torch

from nodeflow.cli import main
from nodeflow.models import ModelStore

pytestmark = pytest.mark.usefixtures("sd_one_thread")


@pytest.mark.parametrize(("name", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_every_weight_loads_in_the_requested_dtype(tiny_sd_dir, name, dtype):
    parts = ModelStore(device="cpu").load_sd(tiny_sd_dir, dtype=name)

    for module in (parts.unet, parts.vae, parts.text_encoder):
        assert {p.dtype for p in module.parameters()} == {dtype}


def test_run_json_reports_the_weight_loading_seconds_apart(tiny_sd_dir, tmp_path, capsys):
    code = main(["run", "txt2img", "--json", "--device", "cpu", "--out", str(tmp_path), "--set", f"model={tiny_sd_dir}",
                 "--set", "width=64", "--set", "height=64", "--set", "steps=2"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0, report["errors"]
    assert 0 < report["load_seconds"] <= report["nodes"]["load"]["seconds"]
