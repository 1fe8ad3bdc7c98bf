"""Write the image-tool workflows (inpaint, outpaint, controlnet, hires_fix, sdxl_inpaint, sdxl_controlnet) into workflows/.

    python tools/make_workflows.py

The graphs share their model/prompt/scheduler nodes; writing them from one script keeps
them consistent. The JSON files are what ships; this script is only how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def link(node: str, output: str) -> dict[str, str]:
    """A link to ``node``'s ``output``."""
    return {"node": node, "output": output}


def base_nodes(prompt: str, negative: str = "", steps: int = 20) -> dict[str, Any]:
    """Load Model, the two prompts and their encoders, and the scheduler (as txt2img.json has them)."""
    return {
        "load": _n("sd.load_model", (40, 260), "Load Model", model="default", dtype="auto", device="auto"),
        "prompt": _n("sd.tokenize", (380, 40), "Prompt", text=prompt, tokenizer=link("load", "tokenizer")),
        "negative": _n("sd.tokenize", (380, 240), "Negative Prompt", text=negative, tokenizer=link("load", "tokenizer")),
        "encode_prompt": _n("sd.text_encode", (700, 40), "Encode Prompt", clip_skip=1,
                            text_encoder=link("load", "text_encoder"), tokens=link("prompt", "tokens")),
        "encode_negative": _n("sd.text_encode", (700, 240), "Encode Negative", clip_skip=1,
                              text_encoder=link("load", "text_encoder"), tokens=link("negative", "tokens")),
        "scheduler": _n("sd.scheduler", (380, 460), "Scheduler", config=link("load", "scheduler_config"), name="ddim",
                        steps=steps, eta=0.0, unet=link("load", "unet")),
    }


def base_inputs() -> dict[str, Any]:
    """The graph inputs every SD workflow exposes."""
    return {
        "model": _i("load", "model", 'a diffusers folder, a .safetensors checkpoint, or "default" (the embedded 16x16 digits model)'),
        "prompt": _i("prompt", "text", "what to draw"),
        "negative_prompt": _i("negative", "text", "what to steer away from (the unconditional branch)"),
        "steps": _i("scheduler", "steps", "number of denoising steps"),
        "scheduler": _i("scheduler", "name", "ddim, pndm, euler, euler_a, dpmpp_2m, lms, unipc, heun, ddpm, or a diffusers class name"),
        "guidance_scale": _i("denoise", "guidance_scale", "classifier-free guidance scale"),
    }


def _n(type_: str, pos: tuple[int, int], title: str, **inputs: Any) -> dict[str, Any]:
    return {"type": type_, "inputs": inputs, "ui": {"pos": list(pos), "title": title}}


def _i(node: str, name: str, description: str) -> dict[str, str]:
    return {"node": node, "input": name, "description": description}


def _denoise(latents: dict[str, str], scheduler: dict[str, str], pos: tuple[int, int], title: str = "Denoise",
             positive: str = "encode_prompt", negative: str = "encode_negative", **extra: Any) -> dict[str, Any]:
    return _n("sd.denoise", pos, title, unet=link("load", "unet"), latents=latents, scheduler=scheduler,
              positive=link(positive, "conditioning"), negative=link(negative, "conditioning"),
              guidance_scale=7.5, guidance_rescale=0.0, **extra)


def inpaint(outpaint: bool = False) -> dict[str, Any]:
    """Repaint the masked part of a picture (or, with ``outpaint``, borders added around it)."""
    nodes = base_nodes("a handwritten digit eight" if not outpaint else "a handwritten digit three")
    nodes["image"] = _n("sd.load_image", (40, 620), "Load Image", path="images/digit3.png")
    if outpaint:
        nodes["pad"] = _n("sd.pad_for_outpaint", (380, 680), "Pad for Outpaint", image=link("image", "image"),
                          left=8, top=0, right=8, bottom=0, feathering=0)
        picture, mask = link("pad", "padded"), link("pad", "mask")
    else:
        nodes["mask"] = _n("sd.load_mask", (40, 860), "Load Mask", path="images/digit3_mask.png", channel="luminance")
        picture, mask = link("image", "image"), link("mask", "mask")
    nodes["encode_image"] = _n("sd.vae_encode", (700, 680), "VAE Encode", vae=link("load", "vae"), image=picture, seed=42, mode="sample")
    nodes["noise_mask"] = _n("sd.set_latent_noise_mask", (1020, 680), "Set Latent Noise Mask",
                             latents=link("encode_image", "latents"), mask=mask, binarize=True)
    nodes["init"] = _n("sd.img2img_init", (1020, 460), "Img2Img Init", latents=link("noise_mask", "masked"),
                       scheduler=link("scheduler", "scheduler"), strength=1.0, seed=-1)
    nodes["inpaint"] = _n("sd.inpaint_model_conditioning", (1340, 560), "Inpaint Model Conditioning", unet=link("load", "unet"),
                          vae=link("load", "vae"), image=picture, mask=mask, latents=link("init", "noised"), binarize=True)
    nodes["denoise"] = _denoise(link("inpaint", "conditioned"), link("init", "remaining"), (1660, 200))
    nodes["decode"] = _n("sd.vae_decode", (1980, 200), "VAE Decode", vae=link("load", "vae"), latents=link("denoise", "denoised"))
    name = "outpaint" if outpaint else "inpaint"
    nodes["save"] = _n("sd.save_image", (2260, 200), "Save Image", images=link("decode", "image"), prefix=name)
    inputs = {
        **base_inputs(),
        "seed": _i("encode_image", "seed", "random seed (image latents, starting noise, masked-image latents, sampler noise)"),
        "image": _i("image", "path", "the picture (absolute, or relative to the working dir, NODEFLOW_INPUT_DIR or workflows/)"),
        "strength": _i("init", "strength", "how much to change the masked area: 1 repaints it from noise"),
    }
    if outpaint:
        inputs.update({side: _i("pad", side, f"pixels added on the {side}") for side in ("left", "right", "top", "bottom")})
        description = ("Extend a picture: pad it with gray borders, repaint the borders. Same pixels as diffusers'"
                       " StableDiffusionInpaintPipeline given the padded picture and its mask.")
    else:
        inputs["mask"] = _i("mask", "path", "the mask picture: white = repaint (the image's size)")
        description = ("Repaint the masked part of a picture, with an ordinary or an inpainting (9-channel) model."
                       " Same pixels as diffusers' StableDiffusionInpaintPipeline.")
    return _graph(name, description, nodes, inputs)


def controlnet() -> dict[str, Any]:
    """txt2img steered by a ControlNet and a control image."""
    nodes = base_nodes("a handwritten digit three")
    nodes["noise"] = _n("sd.noise_latents", (700, 460), "Noise", unet=link("load", "unet"), vae=link("load", "vae"),
                        scheduler=link("scheduler", "scheduler"), seed=42, width=16, height=16, batch=1)
    nodes["load_controlnet"] = _n("sd.load_controlnet", (40, 700), "Load ControlNet", path="controlnets/digits-demo",
                                  dtype="auto", device="auto")
    nodes["control_image"] = _n("sd.load_image", (40, 900), "Control Image", path="images/digit3.png")
    nodes["apply"] = _n("sd.apply_controlnet", (1020, 120), "Apply ControlNet", positive=link("encode_prompt", "conditioning"),
                        negative=link("encode_negative", "conditioning"), controlnet=link("load_controlnet", "controlnet"),
                        image=link("control_image", "image"), strength=1.0, start=0.0, end=1.0)
    nodes["denoise"] = _denoise(link("noise", "latents"), link("scheduler", "scheduler"), (1340, 200), positive="apply", negative="apply")
    nodes["denoise"]["inputs"]["positive"] = link("apply", "positive_out")
    nodes["denoise"]["inputs"]["negative"] = link("apply", "negative_out")
    nodes["decode"] = _n("sd.vae_decode", (1660, 200), "VAE Decode", vae=link("load", "vae"), latents=link("denoise", "denoised"))
    nodes["save"] = _n("sd.save_image", (1940, 200), "Save Image", images=link("decode", "image"), prefix="controlnet")
    inputs = {
        **base_inputs(),
        "seed": _i("noise", "seed", "random seed of the starting noise"),
        "width": _i("noise", "width", "image width in pixels"),
        "height": _i("noise", "height", "image height in pixels"),
        "controlnet": _i("load_controlnet", "path", "a ControlNet folder or .safetensors file (the default is a random demo one)"),
        "control_image": _i("control_image", "path", "the control image (edges, scribble...: add Canny Edges or Scribble for a photo)"),
        "controlnet_scale": _i("apply", "strength", "how strongly the ControlNet steers (diffusers' controlnet_conditioning_scale)"),
    }
    description = ("txt2img steered by a ControlNet. Same pixels as diffusers' StableDiffusionControlNetPipeline. The default"
                   " ControlNet is an untrained random one for the embedded model: it shows the wiring only.")
    return _graph("controlnet", description, nodes, inputs)


def hires_fix() -> dict[str, Any]:
    """txt2img at a small size, upscale (through the latents or the image), img2img on the result."""
    nodes = base_nodes("a handwritten digit five")
    nodes["cfg"] = _n("core.float", (700, 640), "Guidance Scale", value=7.5)
    nodes["sampler"] = _n("core.string", (40, 460), "Sampler", value="ddim")
    nodes["scheduler"]["inputs"]["name"] = link("sampler", "out")
    nodes["noise"] = _n("sd.noise_latents", (700, 460), "Noise", unet=link("load", "unet"), vae=link("load", "vae"),
                        scheduler=link("scheduler", "scheduler"), seed=42, width=16, height=16, batch=1)
    nodes["denoise"] = _denoise(link("noise", "latents"), link("scheduler", "scheduler"), (1020, 200), "Denoise (base)")
    nodes["denoise"]["inputs"]["guidance_scale"] = link("cfg", "out")
    nodes["hires"] = _n("sd.hires_upscale", (1340, 460), "Hires Upscale", latents=link("denoise", "denoised"), vae=link("load", "vae"),
                        upscale="latent", scale_by=2.0, latent_mode="bicubic", image_mode="lanczos", seed=-1)
    nodes["hires_scheduler"] = _n("sd.scheduler", (1340, 700), "Hires Scheduler", config=link("load", "scheduler_config"),
                                  name=link("sampler", "out"), steps=10, eta=0.0, unet=link("load", "unet"))
    nodes["init"] = _n("sd.img2img_init", (1660, 560), "Img2Img Init", latents=link("hires", "upscaled"),
                       scheduler=link("hires_scheduler", "scheduler"), strength=0.5, seed=-1)
    nodes["denoise_hires"] = _denoise(link("init", "noised"), link("init", "remaining"), (1980, 200), "Denoise (hires)")
    nodes["denoise_hires"]["inputs"]["guidance_scale"] = link("cfg", "out")
    nodes["decode"] = _n("sd.vae_decode", (2300, 200), "VAE Decode", vae=link("load", "vae"), latents=link("denoise_hires", "denoised"))
    nodes["save"] = _n("sd.save_image", (2580, 200), "Save Image", images=link("decode", "image"), prefix="hires_fix")
    inputs = {
        **base_inputs(),
        "scheduler": _i("sampler", "value", "ddim, pndm, euler, euler_a, dpmpp_2m, lms, unipc, heun, ddpm, or a diffusers class name"),
        "guidance_scale": _i("cfg", "value", "classifier-free guidance scale (both passes)"),
        "seed": _i("noise", "seed", "random seed (the base pass's noise; the hires pass continues its stream)"),
        "width": _i("noise", "width", "base width in pixels"),
        "height": _i("noise", "height", "base height in pixels"),
        "scale": _i("hires", "scale_by", "upscale factor"),
        "upscale": _i("hires", "upscale", "latent: interpolate the latents; image: decode, resize the picture, encode"),
        "hires_steps": _i("hires_scheduler", "steps", "steps of the hires pass (before strength)"),
        "strength": _i("init", "strength", "how much the hires pass changes the upscaled picture"),
    }
    description = ("Hires fix: txt2img at the base size, upscale (latents or image), then img2img at the large size."
                   " Each half equals diffusers' StableDiffusionPipeline / StableDiffusionImg2ImgPipeline.")
    return _graph("hires_fix", description, nodes, inputs)


# ------------------------------------------------------------------------------ SDXL
_SDXL_MODEL = "an SDXL base model: a diffusers folder or a single-file .safetensors checkpoint (none is shipped)"


def sdxl_nodes(prompt: str, latents: dict[str, str]) -> dict[str, Any]:
    """Load Model (no default: SDXL ships no model), SDXL Text Encode sized by ``latents``, the scheduler (as sdxl_txt2img.json)."""
    return {
        "load": _n("sd.load_model", (40, 260), "Load Model", model="", dtype="auto", device="auto", prediction="auto"),
        "encode": _n("sd.sdxl_text_encode", (700, 40), "SDXL Text Encode", clip=link("load", "clip"), latents=latents, prompt=prompt,
                     prompt_2="", negative_prompt="", negative_prompt_2="", zero_negative="auto"),
        "scheduler": _n("sd.scheduler", (380, 460), "Scheduler", config=link("load", "scheduler_config"), name="euler", steps=30,
                        eta=0.0, unet=link("load", "unet")),
    }


def sdxl_inputs() -> dict[str, Any]:
    """The graph inputs the SDXL workflows share with sdxl_txt2img.json (its descriptions)."""
    return {
        "model": _i("load", "model", _SDXL_MODEL),
        "prompt": _i("encode", "prompt", "what to draw"),
        "negative_prompt": _i("encode", "negative_prompt", "what to steer away from (empty: zeros, as diffusers' SDXL pipeline)"),
        "steps": _i("scheduler", "steps", "number of denoising steps"),
        "scheduler": _i("scheduler", "name", "ddim, pndm, euler, euler_a, dpmpp_2m, lms, unipc, heun, ddpm, or a diffusers class name"),
        "guidance_scale": _i("denoise", "guidance_scale", "classifier-free guidance scale"),
    }


def _sdxl_denoise(latents: dict[str, str], scheduler: dict[str, str], pos: tuple[int, int], conditioning: str, positive: str,
                  negative: str) -> dict[str, Any]:
    return _n("sd.denoise", pos, "Denoise", unet=link("load", "unet"), latents=latents, scheduler=scheduler,
              positive=link(conditioning, positive), negative=link(conditioning, negative), guidance_scale=5.0, guidance_rescale=0.0)


def _sdxl_tail(nodes: dict[str, Any], x: int, prefix: str) -> None:
    nodes["decode"] = _n("sd.vae_decode", (x, 200), "VAE Decode", vae=link("load", "vae"), latents=link("denoise", "denoised"), upcast=True)
    nodes["save"] = _n("sd.save_image", (x + 280, 200), "Save Image", images=link("decode", "image"), prefix=prefix)


def sdxl_inpaint() -> dict[str, Any]:
    """SDXL inpainting, the chain of inpaint.json with SDXL Text Encode, the fp32 VAE upcasts and picture/mask resizing."""
    nodes = sdxl_nodes("a photo of a red fox in the snow", link("encode_image", "latents"))
    nodes["image"] = _n("sd.load_image", (40, 620), "Load Image", path="images/digit3.png")
    nodes["mask"] = _n("sd.load_mask", (40, 860), "Load Mask", path="images/digit3_mask.png", channel="luminance")
    nodes["width"] = _n("core.int", (40, 1080), "Width (0 = keep)", value=0)
    nodes["height"] = _n("core.int", (40, 1200), "Height (0 = keep)", value=0)
    size = {"width": link("width", "out"), "height": link("height", "out")}
    nodes["resize"] = _n("sd.resize_image", (380, 680), "Resize Image", images=link("image", "image"), **size)
    nodes["resize_mask"] = _n("sd.resize_mask", (380, 900), "Resize Mask", mask=link("mask", "mask"), **size)
    picture, mask = link("resize", "resized"), link("resize_mask", "resized")
    nodes["encode_image"] = _n("sd.vae_encode", (700, 680), "VAE Encode", vae=link("load", "vae"), image=picture, seed=42, mode="sample",
                               upcast=True)
    nodes["noise_mask"] = _n("sd.set_latent_noise_mask", (1020, 680), "Set Latent Noise Mask",
                             latents=link("encode_image", "latents"), mask=mask, binarize=True)
    nodes["init"] = _n("sd.img2img_init", (1020, 460), "Img2Img Init", latents=link("noise_mask", "masked"),
                       scheduler=link("scheduler", "scheduler"), strength=1.0, seed=-1, denoising_start=0.0)
    nodes["inpaint"] = _n("sd.inpaint_model_conditioning", (1340, 560), "Inpaint Model Conditioning", unet=link("load", "unet"),
                          vae=link("load", "vae"), image=picture, mask=mask, latents=link("init", "noised"), binarize=True, upcast=True)
    nodes["denoise"] = _sdxl_denoise(link("inpaint", "conditioned"), link("init", "remaining"), (1660, 200), "encode", "positive", "negative")
    _sdxl_tail(nodes, 1980, "sdxl_inpaint")
    inputs = {
        **sdxl_inputs(),
        "seed": _i("encode_image", "seed", "random seed (image latents, starting noise, masked-image latents, sampler noise)"),
        "image": _i("image", "path", "the picture (absolute, or relative to the working dir, NODEFLOW_INPUT_DIR or workflows/)"),
        "mask": _i("mask", "path", "the mask picture: white = repaint (the image's size)"),
        "strength": _i("init", "strength", "how much to change the masked area: 1 repaints it from noise (diffusers' default: 0.9999)"),
        "width": _i("width", "value", "resize the picture and the mask first (0: keep the width)"),
        "height": _i("height", "value", "resize the picture and the mask first (0: keep the height)"),
    }
    description = ("SDXL inpainting, with an ordinary or an inpainting (9-channel) SDXL model. Same pixels as diffusers'"
                   " StableDiffusionXLInpaintPipeline. Needs an SDXL model (--set model=PATH).")
    return _graph("sdxl_inpaint", description, nodes, inputs)


def sdxl_controlnet() -> dict[str, Any]:
    """SDXL txt2img steered by an SDXL ControlNet and a control image."""
    nodes = sdxl_nodes("a photo of a red fox in the snow", link("noise", "latents"))
    nodes["noise"] = _n("sd.noise_latents", (700, 460), "Noise", unet=link("load", "unet"), vae=link("load", "vae"),
                        scheduler=link("scheduler", "scheduler"), seed=42, width=1024, height=1024, batch=1)
    nodes["load_controlnet"] = _n("sd.load_controlnet", (40, 700), "Load ControlNet", path="", dtype="auto", device="auto")
    nodes["control_image"] = _n("sd.load_image", (40, 900), "Control Image", path="images/digit3.png")
    nodes["apply"] = _n("sd.apply_controlnet", (1020, 120), "Apply ControlNet", positive=link("encode", "positive"),
                        negative=link("encode", "negative"), controlnet=link("load_controlnet", "controlnet"),
                        image=link("control_image", "image"), strength=1.0, start=0.0, end=1.0)
    nodes["denoise"] = _sdxl_denoise(link("noise", "latents"), link("scheduler", "scheduler"), (1340, 200), "apply", "positive_out",
                                     "negative_out")
    _sdxl_tail(nodes, 1660, "sdxl_controlnet")
    inputs = {
        **sdxl_inputs(),
        "seed": _i("noise", "seed", "random seed of the starting noise"),
        "width": _i("noise", "width", "image width in pixels (SDXL is trained at 1024)"),
        "height": _i("noise", "height", "image height in pixels"),
        "controlnet": _i("load_controlnet", "path", "an SDXL ControlNet folder or .safetensors file (none is shipped)"),
        "control_image": _i("control_image", "path", "the control image (edges, depth...: add Canny Edges or Scribble for a photo)"),
        "controlnet_scale": _i("apply", "strength", "how strongly the ControlNet steers (diffusers' controlnet_conditioning_scale)"),
    }
    description = ("SDXL txt2img steered by an SDXL ControlNet. Same pixels as diffusers' StableDiffusionXLControlNetPipeline."
                   " Needs an SDXL model and an SDXL ControlNet (--set model=PATH --set controlnet=PATH).")
    return _graph("sdxl_controlnet", description, nodes, inputs)


def _graph(name: str, description: str, nodes: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    return {"format": "nodeflow/graph", "version": 2, "meta": {"name": name, "description": description},
            "inputs": dict(sorted(inputs.items())), "nodes": dict(sorted(nodes.items()))}


def main() -> None:
    """Write every workflow this script knows."""
    graphs = {"inpaint": inpaint(), "outpaint": inpaint(outpaint=True), "controlnet": controlnet(), "hires_fix": hires_fix(),
              "sdxl_inpaint": sdxl_inpaint(), "sdxl_controlnet": sdxl_controlnet()}
    for name, graph in graphs.items():
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(graph, indent=2, sort_keys=True) + "\n")
        print(WORKFLOWS / f"{name}.json")


if __name__ == "__main__":
    main()
