"""The ComfyUI importer: three file shapes in, one nodeflow graph out, every problem named at once."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from comfy_support import deep, default_workflow
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nodeflow.comfy import comfy_errors, import_comfy, sniff
from nodeflow.comfy.prompts import comfy_prompt
from nodeflow.errors import ErrorInfo
from nodeflow.validate import validate


def _import(data: Any, sd_registry: Any) -> Any:
    return import_comfy(data, sd_registry)


def _codes(result: Any) -> list[tuple[str, str | None]]:
    return [(e.code, e.node) for e in result.errors]


def _as_v1(workflow: dict[str, Any]) -> dict[str, Any]:
    """The same workflow in the frontend's schema version 1 (links as objects)."""
    v1 = deep(workflow)
    v1["version"] = 1
    v1["links"] = [{"id": i, "origin_id": o, "origin_slot": s, "target_id": t, "target_slot": ts, "type": ty}
                   for i, o, s, t, ts, ty in workflow["links"]]
    return v1


def _node(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


# -- shapes -------------------------------------------------------------------------------------------------
def test_the_default_ui_workflow_and_its_api_twin_translate_to_the_same_nodes(sd_registry):
    ui, api = _import(default_workflow("ui"), sd_registry), _import(default_workflow("api"), sd_registry)
    assert ui.ok and api.ok
    assert {k: (n.type, n.inputs, n.mode) for k, n in ui.doc.nodes.items()} == {k: (n.type, n.inputs, n.mode) for k, n in api.doc.nodes.items()}
    types = {k: n.type for k, n in ui.doc.nodes.items()}
    assert types == {"4": "sd.load_model", "6": "sd.text_encode", "6.tokens": "sd.tokenize", "7": "sd.text_encode",
                     "7.tokens": "sd.tokenize", "3.scheduler": "sd.scheduler", "3.noise": "sd.noise_latents", "3": "sd.denoise",
                     "8": "sd.vae_decode", "9": "sd.save_image"}
    scheduler = ui.doc.nodes["3.scheduler"].inputs
    assert (scheduler["name"], scheduler["schedule"], scheduler["steps"], scheduler["denoise"]) == ("euler", "normal", 2, 1)
    assert ui.doc.nodes["3.noise"].inputs["seed"] == 156680208700286 and ui.doc.nodes["3"].inputs["guidance_scale"] == 8
    assert ui.doc.meta["comfy"]["ids"]["3.scheduler"] == "3"


def test_a_version_1_workflow_reads_like_version_0_4(sd_registry):
    old, new = _import(default_workflow("ui"), sd_registry), _import(_as_v1(default_workflow("ui")), sd_registry)
    assert new.ok and new.doc.nodes == old.doc.nodes


def test_positions_and_titles_survive_into_the_nodes_ui(sd_registry):
    workflow = default_workflow("ui")
    _node(workflow, 6)["title"] = "Positive"
    doc = _import(workflow, sd_registry).doc
    assert doc.nodes["6"].ui["pos"] == [415.0, 186.0] and doc.nodes["6"].ui["title"] == "Positive"
    assert doc.nodes["6.tokens"].ui["pos"][1] > doc.nodes["6"].ui["pos"][1]  # helpers are drawn below their node
    assert doc.nodes["3.noise"].ui["randomize"] == ["seed"]  # the seed widget's "randomize"


def test_a_png_with_comfyuis_text_chunks_imports_its_workflow(sd_registry):
    info = PngInfo()
    info.add_text("prompt", json.dumps(default_workflow("api")))
    info.add_text("workflow", json.dumps(default_workflow("ui")))
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    assert sniff(buffer.getvalue()) == "png"
    result = _import(buffer.getvalue(), sd_registry)
    assert result.ok and result.source == "ui" and "pos" in result.doc.nodes["4"].ui


def test_a_png_without_comfyui_chunks_is_an_invalid_comfy_file(sd_registry):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert _codes(_import(buffer.getvalue(), sd_registry)) == [("invalid_comfy_file", None)]


def test_a_nodeflow_graph_is_not_taken_for_a_comfyui_file():
    assert sniff(json.dumps({"format": "nodeflow/graph", "version": 2, "nodes": {}})) is None


# -- editor-only nodes, groups, modes ------------------------------------------------------------------------------------
def _with_reroute_primitive_note_group(workflow: dict[str, Any]) -> dict[str, Any]:
    w = deep(workflow)
    # a Reroute node on the VAE link, a PrimitiveNode driving the sampler's steps, a note and a group
    w["nodes"].append({"id": 20, "type": "Reroute", "pos": [1100, 400], "mode": 0, "inputs": [{"name": "", "type": "*", "link": 8}],
                       "outputs": [{"name": "", "type": "VAE", "links": [21]}]})
    w["links"] = [link for link in w["links"] if link[0] != 8] + [[8, 4, 2, 20, 0, "VAE"], [21, 20, 0, 8, 1, "VAE"]]
    _node(w, 8)["inputs"][1]["link"] = 21
    w["nodes"].append({"id": 21, "type": "PrimitiveNode", "pos": [600, 0], "mode": 0,
                       "outputs": [{"name": "INT", "type": "INT", "links": [22], "widget": {"name": "steps"}}], "widgets_values": [7, "fixed"]})
    _node(w, 3)["inputs"].append({"name": "steps", "type": "INT", "link": 22, "widget": {"name": "steps"}})
    w["links"].append([22, 21, 0, 3, 4, "INT"])
    w["nodes"].append({"id": 22, "type": "Note", "pos": [0, 0], "size": [200, 80], "mode": 0, "widgets_values": ["remember the seed"]})
    w["groups"] = [{"id": 1, "title": "Sampling", "bounding": [840, 120, 400, 400], "color": "#3f789e", "font_size": 24}]
    return w


def test_reroutes_primitives_notes_and_groups_are_resolved_and_kept(sd_registry):
    result = _import(_with_reroute_primitive_note_group(default_workflow("ui")), sd_registry)
    assert result.ok, result.errors
    doc = result.doc
    assert doc.nodes["8"].inputs["vae"] == {"node": "4", "output": "vae"}  # through the reroute
    assert doc.nodes["3.scheduler"].inputs["steps"] == 7  # the primitive's value
    editor = doc.meta["editor"]
    assert editor["groups"] == [{"title": "Sampling", "bounding": [840, 120, 400, 400], "color": "#3f789e", "font_size": 24}]
    assert editor["notes"][0]["text"] == "remember the seed"
    (reroute,) = editor["reroutes"]
    assert reroute["pos"] == [1100.0, 400.0] and reroute["links"] == [{"node": "8", "input": "vae"}]


def test_muted_and_bypassed_nodes_keep_comfyuis_meaning(sd_registry):
    workflow = default_workflow("ui")
    _node(workflow, 7)["mode"] = 4  # bypassed text encode: nothing of its type to pass on, so the sampler is skipped
    _node(workflow, 9)["mode"] = 2  # muted save
    doc = _import(workflow, sd_registry).doc
    assert doc.nodes["7"].mode.value == "bypassed" and doc.nodes["7.tokens"].mode.value == "bypassed"
    assert doc.nodes["9"].mode.value == "muted"
    assert doc.nodes["3"].inputs["negative"] == {"node": "7", "output": "conditioning"}  # linked through: nodeflow applies it


def test_a_bypassed_lora_passes_the_model_and_clip_through(sd_registry):
    api = default_workflow("api")
    api["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "style.safetensors",
                                                        "strength_model": 0.8, "strength_clip": 0.5}}
    api["3"]["inputs"]["model"] = ["10", 0]
    api["6"]["inputs"]["clip"] = ["10", 1]
    doc = _import(api, sd_registry).doc
    assert doc.nodes["10"].type == "sd.lora" and doc.nodes["10"].inputs["strength_text"] == 0.5
    assert doc.nodes["3"].inputs["unet"] == {"node": "10", "output": "lora_unet"}
    assert doc.nodes["6"].inputs["text_encoder"] == {"node": "10", "output": "lora_text_encoder"}
    assert doc.nodes["3.scheduler"].inputs["config"] == {"node": "4", "output": "scheduler_config"}


def _img2img_ui() -> dict[str, Any]:
    """The default workflow with LoadImage -> VAEEncode feeding the sampler instead of the empty latent."""
    w = default_workflow("ui")
    w["nodes"] = [n for n in w["nodes"] if n["id"] != 5]
    w["links"] = [link for link in w["links"] if link[0] != 2] + [[30, 11, 0, 12, 0, "IMAGE"], [31, 4, 2, 12, 1, "VAE"],
                                                                  [32, 12, 0, 3, 3, "LATENT"]]
    w["nodes"].append({"id": 11, "type": "LoadImage", "pos": [0, 700], "mode": 0, "widgets_values": ["photo.png", "image"],
                       "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [30]}, {"name": "MASK", "type": "MASK", "links": []}]})
    w["nodes"].append({"id": 12, "type": "VAEEncode", "pos": [300, 700], "mode": 0,
                       "inputs": [{"name": "pixels", "type": "IMAGE", "link": 30}, {"name": "vae", "type": "VAE", "link": 31}],
                       "outputs": [{"name": "LATENT", "type": "LATENT", "links": [32]}]})
    _node(w, 3)["inputs"][3]["link"] = 32
    _node(w, 3)["widgets_values"][-1] = 0.6
    return w


def test_an_img2img_ksampler_noises_the_encoded_image_at_the_first_step_it_runs(sd_registry):
    doc = _import(_img2img_ui(), sd_registry).doc
    assert doc.nodes["3.noise"].type == "sd.add_noise" and doc.nodes["3.noise"].inputs["latents"] == {"node": "12", "output": "latents"}
    assert doc.nodes["12"].inputs["mode"] == "argmax" and doc.nodes["11"].inputs["path"] == "photo.png"


def test_a_bypassed_ksampler_hands_its_latent_input_on_as_comfyui_does(sd_registry):
    workflow = _img2img_ui()
    _node(workflow, 3)["mode"] = 4
    doc = _import(workflow, sd_registry).doc
    assert doc.nodes["8"].inputs["latents"] == {"node": "12", "output": "latents"}
    assert {doc.nodes[n].mode.value for n in ("3", "3.scheduler", "3.noise")} == {"bypassed"}


def test_clip_set_last_layer_sets_clip_skip_on_the_encodes_after_it(sd_registry):
    api = default_workflow("api")
    api["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}}
    api["6"]["inputs"]["clip"] = ["10", 0]
    doc = _import(api, sd_registry).doc
    assert doc.nodes["6"].inputs["clip_skip"] == 2 and doc.nodes["7"].inputs["clip_skip"] == 1


def test_denoise_below_one_runs_the_tail_of_a_longer_schedule_from_noised_empty_latents(sd_registry):
    api = default_workflow("api")
    api["3"]["inputs"]["denoise"] = 0.5
    doc = _import(api, sd_registry).doc
    assert doc.nodes["3.noise"].type == "sd.add_noise" and doc.nodes["5"].type == "sd.empty_latents"
    assert doc.nodes["3.scheduler"].inputs["denoise"] == 0.5


def test_prompts_with_weights_and_embeddings_pass_through_to_tokenize(sd_registry):
    api = default_workflow("api")
    api["6"]["inputs"]["text"] = "a (glass bottle:1.3), ((sharp))"
    api["7"]["inputs"]["text"] = "embedding:bad_hands.pt, blurry"
    result = _import(api, sd_registry)
    assert result.ok, result.errors
    doc = result.doc
    assert doc.nodes["6.tokens"].inputs["text"] == "a (glass bottle:1.3), ((sharp))"
    assert doc.nodes["7.tokens"].inputs["text"] == "embedding:bad_hands.pt, blurry"
    assert doc.nodes["7.tokens"].inputs["tokenizer"] == {"node": "4", "output": "tokenizer"}  # no textual-inversion node between
    assert not any(n.type == "sd.textual_inversion" for n in doc.nodes.values())


# -- errors -----------------------------------------------------------------------------------------------------------------
def test_unsupported_and_custom_nodes_are_all_named_at_once(sd_registry):
    api = default_workflow("api")
    api["20"] = {"class_type": "IPAdapterApply", "inputs": {}}
    api["21"] = {"class_type": "CheckpointLoaderSDXL", "inputs": {}}
    result = _import(api, sd_registry)
    assert result.doc is None
    assert sorted(_codes(result)) == [("unsupported_comfy_node", "20"), ("unsupported_comfy_node", "21")]
    messages = " ".join(e.message for e in result.errors)
    assert "IPAdapterApply" in messages and "CheckpointLoaderSDXL" in messages


def test_a_comfyui_subgraph_is_an_unsupported_node(sd_registry):
    workflow = _as_v1(default_workflow("ui"))
    workflow["definitions"] = {"subgraphs": [{"id": "a1b2c3", "name": "My block", "nodes": [], "links": []}]}
    workflow["nodes"].append({"id": 30, "type": "a1b2c3", "pos": [0, 0], "mode": 0, "inputs": [], "outputs": []})
    result = _import(workflow, sd_registry)
    assert _codes(result) == [("unsupported_comfy_node", "30")] and "subgraph" in result.errors[0].message


def test_a_link_to_a_missing_node_or_slot_is_a_bad_comfy_link(sd_registry):
    api = default_workflow("api")
    api["8"]["inputs"]["samples"] = ["3", 5]
    api["9"]["inputs"]["images"] = ["99", 0]
    assert sorted(_codes(_import(api, sd_registry))) == [("bad_comfy_link", "8"), ("bad_comfy_link", "9")]


def test_a_ui_link_id_that_the_workflow_does_not_have_is_a_bad_comfy_link(sd_registry):
    workflow = default_workflow("ui")
    _node(workflow, 8)["inputs"][0]["link"] = 77
    assert ("bad_comfy_link", "8") in _codes(_import(workflow, sd_registry))


def test_missing_widget_values_are_named(sd_registry):
    workflow = default_workflow("ui")
    _node(workflow, 3)["widgets_values"] = [1, "fixed", 20]
    result = _import(workflow, sd_registry)
    assert {(e.code, e.node, e.input) for e in result.errors} == {
        ("bad_comfy_widgets", "3", name) for name in ("cfg", "sampler_name", "scheduler", "denoise")}


@pytest.mark.parametrize("data", [b"not json", "[1, 2]", json.dumps({"nodes": "x"}), json.dumps({"1": {"inputs": {}}})])
def test_malformed_files_are_structured_errors_never_a_crash(sd_registry, data):
    result = _import(data, sd_registry)
    assert result.doc is None and result.errors and all(e.code == "invalid_comfy_file" for e in result.errors)


def test_errors_on_translated_nodes_are_told_with_comfyuis_ids(sd_registry):
    api = default_workflow("api")
    api["3"]["inputs"]["sampler_name"] = "euler_ancestral"
    api["3"]["inputs"]["scheduler"] = "karras"
    doc = _import(api, sd_registry).doc
    told = comfy_errors(validate(doc, sd_registry), doc.meta)
    assert [(e.code, e.node, e.input) for e in told] == [("invalid_value", "3", "scheduler")]
    assert "EulerAncestralDiscreteScheduler" in told[0].message and told[0].message.startswith("KSampler 3")
    assert comfy_errors([ErrorInfo("x", "y", "other")], doc.meta)[0].node == "other"


# -- prompt syntax -------------------------------------------------------------------------------------------------------------
def test_comfyui_prompts_keep_comfyuis_meaning_in_nodeflows_syntax():
    # weights, escapes and embeddings are the same syntax: untouched
    assert comfy_prompt("a (b:1.2) ((c)) \\(d\\) embedding:e, f") == "a (b:1.2) ((c)) \\(d\\) embedding:e, f"
    # ComfyUI reads square brackets and BREAK as text; nodeflow would weigh / split: escaped, lower-cased
    assert comfy_prompt("[dim] x BREAK y BREAKFAST") == "\\[dim\\] x break y BREAKFAST"


def test_comfyui_prompt_text_gives_comfyuis_tokens(sd_registry):
    from models_tiny import clip_tokenizer
    from nodeflow_nodes.sd.text import Tokenize

    tokenizer = clip_tokenizer()
    run = Tokenize().run
    as_comfy = run(None, tokenizer, comfy_prompt("a [cat] BREAK dog"))
    literal = tokenizer("a [cat] break dog").input_ids  # what ComfyUI's tokenizer call sees (lower-cased by CLIP)
    assert as_comfy.chunks == 1 and as_comfy.weights is None
    assert as_comfy.ids[0, : len(literal)].tolist() == literal
