"""The run budget (nodeflow.budget): sizes flow along links from the nodes that make them; refusals name them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image as PILImage

from nodeflow.budget import Budget, ModelFacts, Pixels, estimate_peak_bytes
from nodeflow.files import PathResolver
from nodeflow.graph import load_graph, parse_graph
from nodeflow.validate import check

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _errors(doc, registry, budget):  # type: ignore[no-untyped-def]
    return [(e.code, e.node, e.input) for e in check(doc, registry, PathResolver(), budget).errors]


def test_img2img_is_sized_by_its_picture_file_header(sd_registry, tmp_path):
    PILImage.new("RGB", (640, 480)).save(tmp_path / "big.png")
    doc = load_graph(WORKFLOWS / "img2img.json")
    doc.nodes["image"].inputs["path"] = str(tmp_path / "big.png")

    assert _errors(doc, sd_registry, Budget(max_pixels=640 * 480 - 1)) == [("over_budget", "image", "path")]
    assert _errors(doc, sd_registry, Budget(max_pixels=640 * 480)) == []


def test_a_resize_after_the_picture_is_where_the_larger_size_is_made(sd_registry, tmp_path):
    PILImage.new("RGB", (64, 64)).save(tmp_path / "small.png")
    doc = load_graph(WORKFLOWS / "img2img.json")
    doc.nodes["image"].inputs["path"] = str(tmp_path / "small.png")
    doc.nodes["resize"].inputs.update(width=1024, height=0)  # 0 keeps the picture's height: 1024 x 64

    assert _errors(doc, sd_registry, Budget(max_pixels=1024 * 64 - 1)) == [("over_budget", "resize", "width")]


def test_joined_batches_add_up(sd_registry):
    doc = json.loads((WORKFLOWS / "txt2img.json").read_text())
    nodes = doc["nodes"]
    nodes["noise2"] = json.loads(json.dumps(nodes["noise"]))
    nodes["join"] = {"type": "sd.join_latents", "inputs": {"latents_a": {"node": "noise", "output": "latents"},
                                                           "latents_b": {"node": "noise2", "output": "latents"}}}
    nodes["denoise"]["inputs"]["latents"] = {"node": "join", "output": "joined"}
    for n in ("noise", "noise2"):
        nodes[n]["inputs"].update(width=256, height=256, batch=2)
    doc = parse_graph(doc)

    assert _errors(doc, sd_registry, Budget(max_pixels=256 * 256 * 4 - 1)) == [("over_budget", "join", "latents_a")]
    assert _errors(doc, sd_registry, Budget(max_pixels=256 * 256 * 4)) == []


def test_an_invalid_graph_reports_its_own_errors_and_no_budget_guess(sd_registry):
    doc = load_graph(WORKFLOWS / "txt2img.json")
    doc.nodes["noise"].inputs.update(width=8192, height=8192, steps=3)  # 'steps' is not an input of Noise Latents

    assert [e.code for e in check(doc, sd_registry, None, Budget()).errors] == ["unknown_input"]


def test_without_a_budget_nothing_is_limited(sd_registry):
    doc = load_graph(WORKFLOWS / "txt2img.json")
    doc.nodes["noise"].inputs.update(width=8192, height=8192, batch=64)

    assert _errors(doc, sd_registry, None) == []


def test_the_memory_estimate_follows_its_documented_formula():
    facts = ModelFacts(parameters=1_000_000, unet_channels=320, vae_channels=128, vae_factor=8, dtype="fp16")
    size = Pixels(512, 512, 2)
    e = 2
    unet = 2 * 2 * (512 * 512 / 64) * 320 * e * 24
    vae = 2 * 512 * 512 * 128 * e * 8
    assert estimate_peak_bytes(facts, size) == int(1_000_000 * e + max(unet, vae))
    auto = ModelFacts(parameters=1_000_000, unet_channels=320, vae_channels=128, vae_factor=8, dtype="auto")
    assert estimate_peak_bytes(auto, size, auto_dtype="fp32") == 2 * estimate_peak_bytes(facts, size)  # auto is the store's precision


def test_the_loader_reads_the_model_facts_from_configs_and_headers_without_loading(tiny_sd_dir):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from nodeflow.models.facts import model_facts

    facts = model_facts(tiny_sd_dir, "fp16")
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet")
    vae = AutoencoderKL.from_pretrained(tiny_sd_dir / "vae")
    assert facts is not None
    assert (facts.unet_channels, facts.vae_channels, facts.vae_factor, facts.dtype) == (32, 32, 4, "fp16")
    loaded = sum(p.numel() for m in (unet, vae) for p in m.parameters())
    assert facts.parameters > loaded  # UNet + VAE + text encoder


def test_nodeflow_run_max_pixels_refuses_before_running(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nodeflow.cli", "run", "txt2img", "--set", "width=1024", "--set", "height=1024",
                           "--max-pixels", "100000", "--json", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert report["status"] == "failed"
    assert [(e["code"], e["node"]) for e in report["errors"]] == [("over_budget", "noise")]
    assert not list(tmp_path.iterdir())
