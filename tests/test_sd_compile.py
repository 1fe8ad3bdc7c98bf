"""Issue 16: ``nodeflow run --compile`` (torch.compile's inductor on the UNet and VAE decoder).

Inductor compiles C++ on the CPU, which takes minutes for a real UNet on a busy 2-core
machine; this test uses the smallest SD-shaped model (one UNet level with cross-attention,
one layer per block; a one-level VAE) so a cold compile stays around a minute. It runs
wherever a C compiler is present (it always is on CI) and skips, saying why, where none is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import png_pixels, run_graph

from nodeflow import testing

pytestmark = pytest.mark.usefixtures("sd_one_thread")

SETTINGS = {"width": 16, "height": 16, "steps": 3, "scheduler": "dpmpp_2m", "seed": 5, "prompt": "a cube"}


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="module")
def micro_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = {
        "unet": testing.unet((32,), (True,), cross_attention_dim=32, sample_size=16, seed=3),
        "vae": testing.vae((32,), sample_size=16, seed=3),
        "text_encoder": testing.text_encoder(testing.clip_config(32, 4, intermediate=64)),
    }
    return testing.save_sd_folder(tmp_path_factory.mktemp("micro_sd") / "model", parts)


def _run(model: Path, out: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[np.ndarray, dict]:
    report = run_graph("txt2img", out, capsys, *flags, model=model, **SETTINGS)
    return png_pixels(report["outputs"][0]), report


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.skipif(_compiler() is None, reason="torch.compile's inductor needs a C compiler (cc/gcc/clang) on the CPU")
def test_run_compile_draws_the_default_paths_image_within_rounding(micro_sd_dir, tmp_path, capsys):
    default, _ = _run(micro_sd_dir, tmp_path / "default", capsys)
    fast, report = _run(micro_sd_dir, tmp_path / "fast", capsys, "--compile")

    assert psnr(fast, default) >= 35.0
    assert fast.std() > 0  # a real picture, not a blank one that would match trivially
    assert report["load_seconds"] > 0


def test_psnr_tells_a_different_image_apart():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)

    assert psnr(a, a) == float("inf")
    assert psnr(a, b) < 35.0


def test_a_shared_copy_of_a_compiled_module_runs_its_own_weights():
    # A LoRA merged after --compile makes a shared copy: it must stay compiled (a deep copy of a
    # module drops its compiled call) and run its own weights, not the base's.
    import torch

    from nodeflow.models import fast
    from nodeflow.models.derive import replace_parameter, shared_copy

    base = torch.nn.Linear(3, 3)
    # dynamo without inductor (no C++ build here); reduce-overhead also wraps the compiled call
    fast._compile(base, {"backend": "eager", "mode": "reduce-overhead", "dynamic": False})
    copy = shared_copy(base)
    replace_parameter(copy, "weight", torch.zeros(3, 3))
    x = torch.ones(1, 3)

    with torch.no_grad():
        assert torch.equal(copy(x), base.bias.detach()[None])
        assert not torch.equal(base(x), copy(x))
    assert copy._compiled_call_impl is not None and copy._compiled_call_impl is not base._compiled_call_impl


def test_the_compiled_models_are_built_once_per_store_and_the_node_choice_wins(tiny_sd_dir):
    from nodeflow_nodes.sd.load import LoadModel

    from nodeflow.context import Context
    from nodeflow.models import ModelStore
    from nodeflow.models.fast import is_compiled

    store = ModelStore(device="cpu", compile="default")  # as `nodeflow serve --compile` makes it
    ctx = Context("load", "sd.load_model", model_store=store)
    node = LoadModel()
    base = store.load_sd(tiny_sd_dir)

    first = node.run(ctx, model=str(tiny_sd_dir), dtype="auto", device="cpu")  # auto: the store's --compile
    second = node.run(ctx, model=str(tiny_sd_dir), dtype="auto", device="cpu", compile="auto")
    off = node.run(ctx, model=str(tiny_sd_dir), dtype="auto", device="cpu", compile="off")

    assert first["unet"] is second["unet"] and first["vae"] is second["vae"]  # one compiled module per process
    assert is_compiled(first["unet"]) and is_compiled(first["vae"].decoder)
    assert off["unet"] is base.unet and not is_compiled(base.unet)  # the store's model itself is never compiled
    assert first["unet"].conv_in.weight is base.unet.conv_in.weight  # weights shared (CPU: no channels-last copy)
    keys = {node.fingerprint(ctx, model=str(tiny_sd_dir), dtype="auto", device="cpu", compile=c) for c in ("auto", "off")}
    assert len(keys) == 2  # compiled and eager results never share a cache entry


def test_load_vae_compiles_its_decoder_as_load_model_does(tiny_sd_dir):
    from nodeflow_nodes.sd.load import LoadVAE

    from nodeflow.context import Context
    from nodeflow.files import PathResolver
    from nodeflow.models import ModelStore
    from nodeflow.models.fast import is_compiled

    store = ModelStore(device="cpu", compile="default")  # `nodeflow run --compile`
    ctx = Context("vae", "sd.load_vae", model_store=store, paths=PathResolver.create([tiny_sd_dir]))
    node = LoadVAE()
    args = {"path": str(tiny_sd_dir / "vae"), "scaling_factor": 0.0, "dtype": "auto", "device": "cpu"}
    first, second, off = node.run(ctx, **args), node.run(ctx, **args, compile="auto"), node.run(ctx, **args, compile="off")
    assert first is second and is_compiled(first.decoder) and not is_compiled(first.encoder)  # built once; encoding stays eager
    assert not is_compiled(off) and first.decoder.conv_in.weight is off.decoder.conv_in.weight  # the loaded VAE, shared weights
    keys = {node.fingerprint(ctx, dtype="auto", device="cpu", compile=c) for c in ("auto", "off", "on")}
    assert len(keys) == 2  # auto resolves to the store's "default", the same as "on"
