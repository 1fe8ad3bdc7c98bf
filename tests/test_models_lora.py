"""LoRA: merged weights follow W' = W + w * alpha / rank * up @ down, in new modules only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_tiny import tiny_text_encoder, tiny_unet
from nodeflow_nodes.sd import lora as lora_node
from safetensors.torch import save_file

from nodeflow.graph import parse_graph
from nodeflow.models import ModelStore
from nodeflow.models.lora import LoraError, merge_lora, parse_lora, read_lora
from nodeflow.node import Context

Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # a Linear
PROJ_IN = "down_blocks.1.attentions.0.proj_in"  # a 1x1 Conv2d in SD 1.x
TE_Q = "encoder.layers.1.self_attn.q_proj"
RANK, ALPHA = 4, 2.0


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return tiny_unet()


@pytest.fixture(scope="module")
def text_encoder() -> torch.nn.Module:
    return tiny_text_encoder()


def _factors(module: torch.nn.Module, name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    weight = module.get_submodule(name).weight
    gen = torch.Generator().manual_seed(seed)
    down = torch.randn(RANK, *weight.shape[1:2], *([1] * (weight.ndim - 2)), generator=gen)
    up = torch.randn(weight.shape[0], RANK, *([1] * (weight.ndim - 2)), generator=gen)
    return down, up


@pytest.fixture(scope="module")
def kohya_file(tmp_path_factory: pytest.TempPathFactory, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> Path:
    tensors = {}
    for i, (prefix, module, name) in enumerate(
        (("lora_unet_", unet, Q), ("lora_unet_", unet, PROJ_IN), ("lora_te_text_model_", text_encoder, TE_Q))
    ):
        down, up = _factors(module, name, seed=i)
        flat = prefix + name.replace(".", "_")
        tensors |= {f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up, f"{flat}.alpha": torch.tensor(ALPHA)}
    path = tmp_path_factory.mktemp("lora") / "kohya.safetensors"
    save_file(tensors, str(path))
    return path


def _expected(module: torch.nn.Module, name: str, seed: int, strength: float, alpha: float = ALPHA) -> torch.Tensor:
    weight = module.get_submodule(name).weight
    down, up = _factors(module, name, seed)
    delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
    return weight + (strength * (alpha / RANK)) * delta


def _run_node(store: ModelStore, unet: torch.nn.Module, text_encoder: torch.nn.Module, path: Path, su: float, st: float) -> dict:
    ctx = Context(node_id="1", node_type="sd.lora", model_store=store)
    return lora_node.ApplyLora().run(ctx, unet=unet, text_encoder=text_encoder, lora=str(path), strength_unet=su, strength_text=st)


def test_kohya_lora_merges_linear_weight_as_w_plus_scaled_up_down(unet: torch.nn.Module, kohya_file: Path) -> None:
    merged = merge_lora(unet, read_lora(kohya_file).unet, strength=0.7)
    assert torch.equal(merged.get_submodule(Q).weight, _expected(unet, Q, seed=0, strength=0.7))


def test_kohya_lora_merges_1x1_conv_weight(unet: torch.nn.Module, kohya_file: Path) -> None:
    merged = merge_lora(unet, read_lora(kohya_file).unet, strength=0.7)
    assert torch.equal(merged.get_submodule(PROJ_IN).weight, _expected(unet, PROJ_IN, seed=1, strength=0.7))


def test_kohya_lora_merges_text_encoder_despite_text_model_prefix(text_encoder: torch.nn.Module, kohya_file: Path) -> None:
    merged = merge_lora(text_encoder, read_lora(kohya_file).text_encoder, strength=1.5)
    assert torch.equal(merged.get_submodule(TE_Q).weight, _expected(text_encoder, TE_Q, seed=2, strength=1.5))


def test_layers_the_lora_does_not_name_are_shared_with_the_base(unet: torch.nn.Module, kohya_file: Path) -> None:
    merged = merge_lora(unet, read_lora(kohya_file).unet, strength=1.0)
    assert merged is not unet
    assert merged.conv_in.weight is unet.conv_in.weight  # no copy of untouched weights


def test_merging_leaves_the_base_model_unchanged(unet: torch.nn.Module, kohya_file: Path) -> None:
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    versions = {k: v._version for k, v in unet.state_dict().items()}
    merge_lora(unet, read_lora(kohya_file).unet, strength=1.0)
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) and versions[k] == after[k]._version for k in before)


def test_diffusers_peft_lora_without_alpha_merges_with_scale_one(unet: torch.nn.Module, tmp_path: Path) -> None:
    down, up = _factors(unet, Q, seed=0)
    path = tmp_path / "peft.safetensors"
    save_file({f"unet.{Q}.lora_A.weight": down, f"unet.{Q}.lora_B.weight": up}, str(path))
    merged = merge_lora(unet, read_lora(path).unet, strength=1.0)
    assert torch.equal(merged.get_submodule(Q).weight, _expected(unet, Q, seed=0, strength=1.0, alpha=RANK))


def test_lora_with_unknown_key_layout_is_refused_naming_the_key() -> None:
    with pytest.raises(LoraError, match="hada_w1_a"):
        parse_lora({"lora_unet_x.hada_w1_a": torch.zeros(1)}, "loha.safetensors")


def test_lora_layer_absent_from_the_model_is_an_error(unet: torch.nn.Module) -> None:
    lora = parse_lora({"lora_unet_nowhere.lora_down.weight": torch.zeros(1, 2), "lora_unet_nowhere.lora_up.weight": torch.zeros(2, 1)})
    with pytest.raises(LoraError, match="nowhere matches no layer"):
        merge_lora(unet, lora.unet, strength=1.0)


def test_lora_node_with_strength_zero_gives_equal_outputs(unet, text_encoder, kohya_file: Path) -> None:
    out = _run_node(ModelStore(device="cpu"), unet, text_encoder, kohya_file, 0.0, 0.0)
    sample, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 48)
    with torch.no_grad():
        assert torch.equal(out["lora_unet"](sample, 10, text).sample, unet(sample, 10, text).sample)


def test_lora_node_changes_the_unet_prediction(unet, text_encoder, kohya_file: Path) -> None:
    out = _run_node(ModelStore(device="cpu"), unet, text_encoder, kohya_file, 1.0, 1.0)
    sample, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 48)
    with torch.no_grad():
        assert not torch.equal(out["lora_unet"](sample, 10, text).sample, unet(sample, 10, text).sample)


def test_lora_node_merges_once_for_two_runs(unet, text_encoder, kohya_file: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = lora_node.lora_models.merge_lora
    monkeypatch.setattr(lora_node.lora_models, "merge_lora", lambda *a, **k: calls.append("merge") or real(*a, **k))
    store = ModelStore(device="cpu")
    first = _run_node(store, unet, text_encoder, kohya_file, 0.8, 0.5)
    second = _run_node(store, unet, text_encoder, kohya_file, 0.8, 0.5)
    assert calls == ["merge", "merge"]  # one UNet merge, one text-encoder merge
    assert first["lora_unet"] is second["lora_unet"]


def test_lora_node_merges_again_for_another_strength(unet, text_encoder, kohya_file: Path) -> None:
    store = ModelStore(device="cpu")
    first = _run_node(store, unet, text_encoder, kohya_file, 0.8, 0.5)
    second = _run_node(store, unet, text_encoder, kohya_file, 0.9, 0.5)
    assert first["lora_unet"] is not second["lora_unet"]
    assert first["lora_text_encoder"] is second["lora_text_encoder"]


def test_lora_node_cache_key_changes_when_the_file_is_replaced(kohya_file: Path, tmp_path: Path, sd_registry) -> None:
    from nodeflow.files import PathResolver
    from nodeflow.plan import make_plan
    from nodeflow.validate import check

    copy = tmp_path / "replaced.safetensors"
    copy.write_bytes(kohya_file.read_bytes())
    graph = parse_graph({"nodes": {
        "m": {"type": "sd.load_model", "inputs": {}},
        "l": {"type": "sd.lora", "inputs": {"unet": {"node": "m", "output": "unet"}, "lora": "replaced.safetensors",
                                           "text_encoder": {"node": "m", "output": "text_encoder"}}},
    }})
    paths = PathResolver.create([tmp_path])

    def key() -> str:
        checked = check(graph, sd_registry, paths)
        assert checked.ok, checked.errors
        return make_plan(checked, sd_registry, targets=["l"], paths=paths, models=ModelStore(device="cpu")).keys["l"]

    before = key()
    assert key() == before
    copy.write_bytes(kohya_file.read_bytes()[:-1])
    assert key() != before


def test_lora_node_names_a_missing_file() -> None:
    ctx = Context(node_id="1", node_type="sd.lora", model_store=ModelStore(device="cpu"))
    with pytest.raises(FileNotFoundError, match="LoRA file 'nope.safetensors' not found"):
        lora_node.ApplyLora().run(ctx, unet=None, text_encoder=None, lora="nope.safetensors", strength_unet=1.0, strength_text=1.0)
