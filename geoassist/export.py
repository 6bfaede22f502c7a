"""Export a GeoAssist model to the Hugging Face LLaVA format, which transformers and vLLM run.

``export_hf_llava(model_or_folder, out)`` writes a ``LlavaForConditionalGeneration``
folder — weights, config, generation config, processor (image processor + tokenizer)
and chat template — that plain transformers loads with no GeoAssist installed::

    from transformers import AutoProcessor, LlavaForConditionalGeneration
    model = LlavaForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)

How each part maps (every step is exact, not an approximation):

- vision: the open_clip ViT becomes a transformers ``CLIPVisionModel``: ``conv1`` →
  patch embedding, ``class_embedding``/``positional_embedding``/``ln_pre`` → embeddings
  and pre-layernorm, each residual block's packed ``in_proj`` split into q/k/v, ``out_proj``,
  ``ln_1``/``ln_2``, ``mlp.c_fc``/``c_proj`` → ``fc1``/``fc2`` (layer scale, when present, is
  folded into ``out_proj`` and ``fc2``), ``ln_post`` → post-layernorm. Only the blocks up to
  ``feature_layer`` are exported and LLaVA reads the last one (``vision_feature_layer=-1``);
  ``use_cls_token`` maps to ``vision_feature_select_strategy`` ``"full"`` (keep CLS) or
  ``"default"`` (drop it). ``quick_gelu`` towers get ``hidden_act="quick_gelu"``.
- projector: ``mlp2x_gelu`` is LLaVA's ``linear_1 → gelu → linear_2``; ``linear`` and
  ``identity`` use the identity activation with an identity ``linear_2``. The temporal
  embedding of image position 0 — a constant added to every visual token of a single
  image — is folded into ``linear_2``'s bias.
- LM: LoRA is merged; when the tokenizer's ``<image>`` id lies beyond the LM's
  embedding table (the bundled SmolLM2), the table grows by zero rows and the generation
  config suppresses ``<image>`` so that generation never picks it.

What the format cannot express, and so is refused with a message saying why:
``token_pool > 1`` (stock LLaVA feeds the LM one token per patch; the patch-merging
projectors transformers has all put a normalisation or another activation before the
merge, so none computes GeoAssist's k×k average pooling exactly), a multispectral band
adapter (``in_bands != 3``; LLaVA's image processor makes RGB), and several images per
conversation (the temporal embedding of images 2…N; the export answers about one image).

A model with a region decoder (:mod:`geoassist.model.region_decoder`) is exported without
it: LLaVA has no place for the decoder, its fine feature path or its ``<seg>`` rows. The
``<seg>`` id gets a zero row, as ``<image>`` does, and the generation config suppresses it, so
the exported model never writes the token; on detect, ground, refer, segment and change_seg
prompts it answers with the LM alone, and since such a model learned to write ``<seg>`` there,
not digits, those answers carry no usable geometry. Its text answers (captions, questions,
classes, counts) are the same as GeoAssist's. The export logs a warning and the exported
model card says so.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch

from geoassist.errors import GeoAssistError

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("hf-llava",)
NOT_EXPORTED = (
    "token pooling (projector.token_pool > 1)",
    "the multispectral band adapter (vision.in_bands != 3)",
    "pairs and series: the temporal embedding of images after the first",
    "GeoAssist's tiling of large scenes, sensor presets and geo-coordinates in answers",
    "the region decoder: its `<seg>` token is suppressed, so detect, ground, refer, segment "
    "and change_seg answers carry no decoded geometry",
)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ExportError(GeoAssistError):
    """The model uses a feature the target format cannot express."""


# ----------------------------------------------------------------- checks
def export_problems(model) -> list[str]:
    """Why ``model`` cannot be exported to the HF LLaVA format (empty when it can)."""
    config = model.config
    problems = []
    k = config.projector.token_pool
    if k > 1:
        problems.append(
            f"the projector pools {k}×{k} patches into one token (projector.token_pool={k}); "
            "transformers' LlavaForConditionalGeneration feeds the LM one token per patch and none "
            "of its patch-merging projectors computes an average pool exactly, so the export would "
            "be a different model. Export a model trained with token_pool 1"
        )
    if config.vision.in_bands != 3 or model.vision.band_adapter is not None:
        problems.append(
            f"the vision tower reads {config.vision.in_bands} bands through a learned band adapter; "
            "LLaVA's image processor produces RGB only"
        )
    visual = model.vision.visual
    if getattr(visual, "attn_pool", None) is not None:
        problems.append("the open_clip tower uses attentional pooling, which CLIP has no place for")
    if isinstance(visual.ln_pre, torch.nn.Identity):
        problems.append("the open_clip tower has no ln_pre (no_ln_pre=True); CLIP always has one")
    block = visual.transformer.resblocks[0]
    if not isinstance(block.attn, torch.nn.MultiheadAttention):
        problems.append(
            f"unsupported attention module {type(block.attn).__name__} in the open_clip tower"
        )
    for name in ("ln_attn", "ln_inner"):
        if not isinstance(getattr(block, name, torch.nn.Identity()), torch.nn.Identity) or (
            name == "ln_inner"
            and not isinstance(getattr(block.mlp, name, torch.nn.Identity()), torch.nn.Identity)
        ):
            problems.append(f"the open_clip blocks use {name} (scaled cosine/normformer layers)")
    if getattr(block, "ln_1", None) is None or not isinstance(block.ln_1, torch.nn.LayerNorm):
        problems.append("the open_clip blocks are not pre-LayerNorm blocks")
    return problems


def check_exportable(model) -> None:
    problems = export_problems(model)
    if problems:
        raise ExportError(
            "cannot export to the HF LLaVA format: " + "; ".join(problems) + ". "
            "GeoAssist's own checkpoint keeps every feature"
        )


# ------------------------------------------------------------- conversion
def clip_vision_config(model) -> dict[str, Any]:
    """A transformers ``CLIPVisionConfig`` dict for the used blocks of ``model``'s tower."""
    vision = model.vision.config  # resolved: explicit sizes
    visual = model.vision.visual
    mlp = visual.transformer.resblocks[0].mlp
    return {
        "model_type": "clip_vision_model",
        "hidden_size": model.vision.width,
        "intermediate_size": mlp.c_fc.out_features,
        "num_hidden_layers": model.vision.num_blocks_used,
        "num_attention_heads": visual.transformer.resblocks[0].attn.num_heads,
        "num_channels": 3,
        "image_size": vision.image_size,
        "patch_size": model.vision.patch_size,
        "hidden_act": "quick_gelu" if vision.quick_gelu else "gelu",
        "layer_norm_eps": visual.ln_pre.eps,
        "projection_dim": vision.embed_dim,
    }


def open_clip_to_clip_vision(
    visual_state: dict[str, torch.Tensor], num_layers: int, prefix: str = "vision_model."
) -> dict[str, torch.Tensor]:
    """open_clip ``VisionTransformer`` weights (no ``visual.`` prefix) → ``CLIPVisionModel`` keys.

    Blocks from ``num_layers`` on are left out; layer scale (``ls_1``/``ls_2.gamma``) is
    folded into the output projections.
    """
    s = visual_state
    out = {
        "embeddings.class_embedding": s["class_embedding"],
        "embeddings.patch_embedding.weight": s["conv1.weight"],
        "embeddings.position_embedding.weight": s["positional_embedding"],
        "pre_layrnorm.weight": s["ln_pre.weight"],
        "pre_layrnorm.bias": s["ln_pre.bias"],
        "post_layernorm.weight": s["ln_post.weight"],
        "post_layernorm.bias": s["ln_post.bias"],
    }
    for i in range(num_layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        q, k, v = s[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = s[src + "attn.in_proj_bias"].chunk(3, dim=0)
        ls_1 = s.get(src + "ls_1.gamma")
        ls_2 = s.get(src + "ls_2.gamma")
        out_w, out_b = s[src + "attn.out_proj.weight"], s[src + "attn.out_proj.bias"]
        fc2_w, fc2_b = s[src + "mlp.c_proj.weight"], s[src + "mlp.c_proj.bias"]
        if ls_1 is not None:  # ls * (W x + b) == (ls[:, None] * W) x + ls * b
            out_w, out_b = ls_1[:, None] * out_w, ls_1 * out_b
        if ls_2 is not None:
            fc2_w, fc2_b = ls_2[:, None] * fc2_w, ls_2 * fc2_b
        out.update(
            {
                dst + "self_attn.q_proj.weight": q,
                dst + "self_attn.k_proj.weight": k,
                dst + "self_attn.v_proj.weight": v,
                dst + "self_attn.q_proj.bias": qb,
                dst + "self_attn.k_proj.bias": kb,
                dst + "self_attn.v_proj.bias": vb,
                dst + "self_attn.out_proj.weight": out_w,
                dst + "self_attn.out_proj.bias": out_b,
                dst + "layer_norm1.weight": s[src + "ln_1.weight"],
                dst + "layer_norm1.bias": s[src + "ln_1.bias"],
                dst + "mlp.fc1.weight": s[src + "mlp.c_fc.weight"],
                dst + "mlp.fc1.bias": s[src + "mlp.c_fc.bias"],
                dst + "mlp.fc2.weight": fc2_w,
                dst + "mlp.fc2.bias": fc2_b,
                dst + "layer_norm2.weight": s[src + "ln_2.weight"],
                dst + "layer_norm2.bias": s[src + "ln_2.bias"],
            }
        )
    return {prefix + k: v.detach().clone().contiguous() for k, v in out.items()}


def projector_state(model) -> tuple[dict[str, torch.Tensor], str]:
    """LLaVA ``linear_1``/``linear_2`` weights for ``model``'s projector, and the activation name.

    The temporal embedding of the first image is folded into ``linear_2``'s bias.
    """
    proj = model.projector.proj
    kind = model.config.projector.type
    temporal0 = model.projector.temporal.weight[0].detach()
    lm_dim = temporal0.shape[0]
    eye = torch.eye(lm_dim, dtype=temporal0.dtype)
    zeros = torch.zeros(lm_dim, dtype=temporal0.dtype)
    if kind == "mlp2x_gelu":
        first, act, second = proj[0], proj[1], proj[2]
        if not (isinstance(act, torch.nn.GELU) and act.approximate == "none"):
            raise ExportError(f"unexpected projector activation {act}")
        w1, b1, w2, b2 = first.weight, first.bias, second.weight, second.bias
        act_name = "gelu"
    elif kind == "linear":
        w1, b1, w2, b2, act_name = proj.weight, proj.bias, eye, zeros, "linear"
    elif kind == "identity":
        w1, b1, w2, b2, act_name = eye, zeros, eye, zeros, "linear"
    else:
        raise ExportError(f"projector type {kind!r} has no LLaVA equivalent")
    state = {
        "linear_1.weight": w1,
        "linear_1.bias": b1,
        "linear_2.weight": w2,
        "linear_2.bias": b2 + temporal0.to(b2.dtype),
    }
    return {k: v.detach().clone().contiguous() for k, v in state.items()}, act_name


def _merged_lm(model):
    lm = model.lm
    if model.has_lora:
        lm = copy.deepcopy(lm).merge_and_unload()
    return lm


def llava_config_and_state(model, return_lm: bool = False):
    """The ``LlavaConfig`` and the full state dict of ``model`` in the HF LLaVA layout."""
    from transformers import LlavaConfig

    check_exportable(model)
    lm = _merged_lm(model)
    text_config = lm.config.to_dict()
    text_config.pop("_name_or_path", None)
    text_config.pop("architectures", None)
    vocab = lm.get_input_embeddings().weight.shape[0]
    image_id = model.image_token_id
    tokenizer_size = len(model.tokenizer)
    new_vocab = max(vocab, tokenizer_size, image_id + 1)
    text_config["vocab_size"] = new_vocab
    tied = bool(getattr(lm.config, "tie_word_embeddings", False))

    state: dict[str, torch.Tensor] = {}
    lm_state = lm.state_dict()
    base_prefix = lm.base_model_prefix + "."  # "model."
    for key, value in lm_state.items():
        if key.startswith(base_prefix):
            state["model.language_model." + key[len(base_prefix) :]] = value
        elif key == "lm_head.weight":
            if not tied:
                state["lm_head.weight"] = value
        else:
            raise ExportError(f"unexpected LM weight {key!r}")
    embed_key = "model.language_model.embed_tokens.weight"
    for key in (embed_key, "lm_head.weight"):
        if key in state and state[key].shape[0] < new_vocab:
            table = state[key]
            pad = table.new_zeros(new_vocab - table.shape[0], table.shape[1])
            state[key] = torch.cat([table, pad], dim=0)
    if tied:
        state["lm_head.weight"] = state[embed_key]

    vision_state = {k: v for k, v in model.vision.visual.state_dict().items()}
    vision = open_clip_to_clip_vision(vision_state, model.vision.num_blocks_used, prefix="")
    state.update({"model.vision_tower." + k: v for k, v in vision.items()})
    projector, act_name = projector_state(model)
    state.update({"model.multi_modal_projector." + k: v for k, v in projector.items()})

    config = LlavaConfig(
        vision_config=clip_vision_config(model),
        text_config=text_config,
        image_token_index=image_id,
        image_seq_length=model.config.num_image_tokens,
        projector_hidden_act=act_name,
        vision_feature_select_strategy="full" if model.vision.config.use_cls_token else "default",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        tie_word_embeddings=tied,
    )
    config.text_config.tie_word_embeddings = tied
    state = {k: v.detach().contiguous() for k, v in state.items()}
    return (config, state, lm) if return_lm else (config, state)


def build_hf_llava(model, dtype: torch.dtype | None = None):
    """An in-memory ``LlavaForConditionalGeneration`` with ``model``'s weights (for tests and benchmarks)."""
    from transformers import LlavaForConditionalGeneration

    config, state, lm = llava_config_and_state(model, return_lm=True)
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(config)
    state = _match_vision_prefix(state, llava.state_dict().keys())
    llava.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        llava.tie_weights()
    _fill_buffers(llava, lm)
    llava = llava.to(dtype or model.lm.dtype).eval()
    llava.generation_config = generation_config(model, config)
    return llava


def _match_vision_prefix(state: dict[str, torch.Tensor], expected) -> dict[str, torch.Tensor]:
    """transformers versions differ on whether CLIPVisionModel nests its weights under ``vision_model.``."""
    tower = "model.vision_tower."
    nested = any(k.startswith(tower + "vision_model.") for k in expected)
    if not nested:
        return state
    return {
        (tower + "vision_model." + k[len(tower) :] if k.startswith(tower) else k): v
        for k, v in state.items()
    }


def _fill_buffers(llava, lm) -> None:
    """Non-persistent buffers are not in the state dict: the LM's (rotary frequencies) come from
    the source LM, CLIP's position ids are a range."""
    base_prefix = lm.base_model_prefix + "."
    source = {
        "model.language_model." + k[len(base_prefix) :]: v
        for k, v in lm.named_buffers()
        if k.startswith(base_prefix)
    }
    for module_name, module in llava.named_modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            path = f"{module_name}.{name}"
            if path in source:
                value = source[path].detach().clone()
            elif name == "position_ids":
                value = torch.arange(buffer.shape[-1]).expand(buffer.shape).clone()
            else:
                raise ExportError(f"cannot initialise buffer {path}")
            module.register_buffer(name, value, persistent=False)


def generation_config(model, config):
    from transformers import GenerationConfig

    lm_vocab = model.lm.get_input_embeddings().weight.shape[0]
    gen = GenerationConfig(
        eos_token_id=model.end_token_id,
        pad_token_id=model.pad_token_id,
        do_sample=False,
        max_new_tokens=256,
    )
    suppressed = []
    if model.image_token_id >= lm_vocab:
        # The added <image> row is zeros; the source model could never emit it, nor may this one.
        suppressed.append(model.image_token_id)
    if model.seg_token_id is not None:
        # The region decoder is not exported; a <seg> with nothing to decode it is suppressed.
        suppressed.append(model.seg_token_id)
    if suppressed:
        gen.suppress_tokens = suppressed
    return gen


# ---------------------------------------------------------------- processor
def chat_template(system_prompt: str) -> str:
    """A Jinja chat template that renders exactly what :func:`geoassist.chat.render` renders.

    Images in a message go first, each as ``<image>``, then a newline and the text — the
    layout GeoAssist uses when a prompt has no ``<image>`` of its own. Without a system
    message the model's own system prompt is used.
    """
    default_system = json.dumps(system_prompt)
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set first = 1 -%}"
        "{%- if messages[0]['content'] is string -%}{%- set system = messages[0]['content'] -%}"
        "{%- else -%}{%- set system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
        " | map(attribute='text') | join('') -%}{%- endif -%}"
        "{%- else -%}{%- set first = 0 -%}{%- set system = " + default_system + " -%}{%- endif -%}"
        "{{ '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}"
        "{%- for message in messages[first:] -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}"
        "{%- set ns = namespace(images=0) -%}"
        "{%- for part in message['content'] if part['type'] in ('image', 'image_url') -%}"
        "{{ '<image>' }}{%- set ns.images = ns.images + 1 -%}{%- endfor -%}"
        "{%- if ns.images > 0 -%}{{ '\\n' }}{%- endif -%}"
        "{%- for part in message['content'] if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
        "{%- endif -%}"
        "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


def build_processor(model):
    """A ``LlavaProcessor``: CLIP image processor with GeoAssist's size and mean/std, the tokenizer
    and the chat template."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    pre = model.config.preprocess
    size = pre.image_size
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        resample=3,  # bicubic, as geoassist.preprocess
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(pre.mean),
        image_std=list(pre.std),
        do_convert_rgb=True,
    )
    tokenizer = copy.deepcopy(model.tokenizer)
    template = chat_template(model.config.system_prompt)
    tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=model.vision.patch_size,
        vision_feature_select_strategy=("full" if model.vision.config.use_cls_token else "default"),
        chat_template=template,
        image_token="<image>",
        num_additional_image_tokens=1,
    )


# ------------------------------------------------------------------- export
def export_hf_llava(
    model_or_folder,
    out: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model_or_folder`` (a GeoAssistModel, checkpoint folder, preset or model name) to
    ``out`` as a transformers ``LlavaForConditionalGeneration`` folder with its processor.

    ``dtype`` (``float32``, ``float16``, ``bfloat16``) converts the weights; by default they keep
    the model's dtype.
    """
    import shutil

    from geoassist.atomic import make_temp_dir, remove_stale_temp_dirs, replace_folder

    out = Path(out).expanduser()
    _check_out(out, overwrite)
    remove_stale_temp_dirs(out)  # before the model is built: a killed export's copy is large
    model = model_or_folder
    if isinstance(model_or_folder, (str, Path)):
        from geoassist.checkpoint import create_model

        model = create_model(model_or_folder)
    check_exportable(model)
    if model.region_decoder is not None:
        logger.warning(
            "%s has a region decoder, which the HF LLaVA format cannot carry: the export never "
            "writes <seg>, so its detect, ground, refer, segment and change_seg answers carry no "
            "decoded geometry (use GeoAssist's own checkpoint for those)",
            model.config.name,
        )
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype]
    llava = build_hf_llava(model, dtype=dtype)
    processor = build_processor(model)

    tmp = make_temp_dir(out)
    try:
        llava.save_pretrained(str(tmp), safe_serialization=True)
        processor.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(_model_card(model, llava))
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s to %s", model.config.name, out)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output path that cannot become the export folder, before any work."""
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = "--out" if parent == out else f"--out's parent {parent}"
            raise ExportError(
                f"{where} is a file, not a folder; give --out a new folder path "
                f"(e.g. {out.with_suffix('')}-hf), or remove the file"
            )
        if parent.exists():
            break
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(
            f"{out} exists and is not empty; pass overwrite=True (--force) to replace it"
        )


def _model_card(model, llava) -> str:
    config = model.config
    n_params = sum(p.numel() for p in llava.parameters())
    notes = "\n".join(f"- {item}" for item in NOT_EXPORTED)
    return f"""# {config.name} (HF LLaVA export)

A GeoAssist vision-language model for Earth-observation imagery, exported to the
transformers `LlavaForConditionalGeneration` format ({n_params / 1e6:.1f} M parameters).

- vision: CLIP ViT ({llava.config.vision_config.num_hidden_layers} blocks, width
  {llava.config.vision_config.hidden_size}, patch {llava.config.vision_config.patch_size},
  {llava.config.vision_config.image_size} px), features of its last block,
  {config.num_image_tokens} visual tokens per image
- projector: {config.projector.type}
- language model: {llava.config.text_config.model_type}, LoRA merged
- chat format: ChatML; one image per conversation, placed before the text

```python
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained("THIS_FOLDER")
processor = AutoProcessor.from_pretrained("THIS_FOLDER")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe the image."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=Image.open("scene.png"), text=prompt, return_tensors="pt")
ids = model.generate(**inputs, max_new_tokens=64)
print(processor.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Coordinates in answers are integers on a 0–1000 grid relative to the image
(GeoAssist's answer grammar, `docs/FORMATS.md` in the GeoAssist repository).

Not exported (GeoAssist's own checkpoint keeps them):
{notes}
"""
