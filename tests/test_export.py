"""Export to the HF LLaVA format: same logits as GeoAssist, loads without GeoAssist, refuses what
the format cannot express."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geoassist.chat import collate, render

# Parity tolerance for float32 weights: the two models run the same operations in a different
# order (packed vs split q/k/v, fused vs separate bias), so they agree to rounding, not bit for bit.
ATOL = 1e-4
RTOL = 1e-4


def _variant(seed=0, *, lora=False, **changes):
    """A tiny model with non-trivial weights where the export folds things (LoRA, temporal row 0)."""
    from geoassist.config import load_preset
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = load_preset("tiny")
    for path, value in changes.items():
        section, field = path.split("__")
        setattr(getattr(config, section), field, value)
    config.lora.enabled = lora
    torch.manual_seed(seed)
    model = GeoAssistModel(config, load_tokenizer(config.lm)).eval()
    with torch.no_grad():
        model.projector.temporal.weight.normal_(std=0.5)
        for name, p in model.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    return model


def _inputs(model, prompts=("Describe the image.", "How many ships are there in the harbour?")):
    rendered = [
        render(
            [
                {"role": "system", "content": model.config.system_prompt},
                {"role": "user", "content": f"<image>\n{p}"},
            ],
            model.tokenizer,
            num_image_tokens=model.config.num_image_tokens,
            image_token_id=model.image_token_id,
            add_generation_prompt=True,
        )
        for p in prompts
    ]
    batch = collate(rendered, model.pad_token_id)
    size = model.config.preprocess.image_size
    pixels = torch.randn(len(prompts), 3, size, size, generator=torch.Generator().manual_seed(1))
    return batch["input_ids"], batch["attention_mask"], pixels


def _logits_match(model, llava, vocab: int | None = None) -> int:
    """GeoAssist's logits equal the export's over the first ``vocab`` ids (default: all of
    GeoAssist's); returns the width of GeoAssist's logits."""
    ids, mask, pixels = _inputs(model)
    with torch.no_grad():
        ours = model(ids, pixels, mask).logits
        theirs = llava(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits
    real = mask.bool()
    vocab = ours.shape[-1] if vocab is None else vocab
    torch.testing.assert_close(theirs[..., :vocab][real], ours[..., :vocab][real], atol=ATOL, rtol=RTOL)
    return ours.shape[-1]


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"lora": True},
        {"vision__use_cls_token": True},
        {"vision__feature_layer": -2},
        {"vision__quick_gelu": True},
        {"projector__type": "linear"},
    ],
    ids=["plain", "lora-merged", "cls-token", "feature-layer-2", "quick-gelu", "linear-projector"],
)
def test_exported_logits_equal_geoassist_logits(variant):
    from geoassist.export import build_hf_llava

    model = _variant(**variant)
    _logits_match(model, build_hf_llava(model))


def test_export_of_a_model_whose_adapter_is_merged_in_place():
    """``Assistant.from_pretrained`` merges LoRA in place; exporting must not merge it twice."""
    from geoassist.export import build_hf_llava

    model = _variant(lora=True)
    model.lm.merge_adapter()
    _logits_match(model, build_hf_llava(model))


def test_exported_greedy_generation_equals_geoassist():
    from geoassist.export import build_hf_llava

    model = _variant(seed=3, lora=True)
    llava = build_hf_llava(model)
    ids, mask, pixels = _inputs(model)
    ours = model.generate(ids, mask, pixels, max_new_tokens=10, min_new_tokens=10)
    theirs = llava.generate(
        input_ids=ids, attention_mask=mask, pixel_values=pixels,
        max_new_tokens=10, min_new_tokens=10, do_sample=False,
    )  # fmt: skip
    assert theirs[:, ids.shape[1] :].tolist() == ours


def test_refuses_what_llava_cannot_express():
    from geoassist.export import ExportError, check_exportable, export_problems

    pooled = _variant(vision__image_size=32, projector__token_pool=2)
    assert any("token_pool" in p for p in export_problems(pooled))
    with pytest.raises(ExportError, match="token_pool=2"):
        check_exportable(pooled)

    from geoassist.config import load_preset
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = load_preset("tiny")
    config.vision.in_bands = 4
    config.preprocess.bands = ["blue", "green", "red", "nir"]
    config.preprocess.mean = [0.1] * 4
    config.preprocess.std = [0.2] * 4
    multiband = GeoAssistModel(config, load_tokenizer(config.lm))
    with pytest.raises(ExportError, match="band adapter"):
        check_exportable(multiband)


def test_chat_template_and_processor_give_geoassist_ids():
    from geoassist.export import build_processor

    model = _variant()
    processor = build_processor(model)
    for question in ("What is in the image?", "Count the ships.\nAnswer with a number."):
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        ]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
        inputs = processor(images=image, text=prompt, return_tensors="pt")
        expected = render(
            [
                {"role": "system", "content": model.config.system_prompt},
                {"role": "user", "content": f"<image>\n{question}"},
            ],
            model.tokenizer,
            num_image_tokens=model.config.num_image_tokens,
            image_token_id=model.image_token_id,
            add_generation_prompt=True,
        )
        assert inputs["input_ids"][0].tolist() == expected.input_ids


def test_processor_pixels_match_geoassist_preprocessing():
    from geoassist.export import build_processor
    from geoassist.io import load_image
    from geoassist.preprocess import to_pixel_values

    model = _variant()
    processor = build_processor(model)
    size = model.config.preprocess.image_size
    for shape in ((size, size, 3), (48, 40, 3)):
        image = np.random.default_rng(2).integers(0, 255, shape, dtype=np.uint8)
        theirs = processor.image_processor(image, return_tensors="pt")["pixel_values"][0]
        ours = to_pixel_values(load_image(image), model.config.preprocess)
        # Same size: identical up to float rounding. Resized: both bicubic, torchvision vs PIL
        # kernels differ by at most about one grey level (1/255/std).
        atol = 1e-5 if shape[0] == size else 2.5 / 255 / min(model.config.preprocess.std)
        torch.testing.assert_close(theirs, ours, atol=atol, rtol=0)


_PLAIN_TRANSFORMERS = r"""
import json, sys
import importlib.abc

class NoGeoAssist(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "geoassist" or name.startswith("geoassist."):
            raise ImportError("geoassist must not be needed")
        return None

sys.meta_path.insert(0, NoGeoAssist())
import numpy as np
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

folder = sys.argv[1]
model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
inputs = processor(images=image, text=prompt, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits[0, -1]
out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6)
print(json.dumps({
    "input_ids": inputs["input_ids"][0].tolist(),
    "pixel_values": inputs["pixel_values"].flatten().tolist(),
    "last_logits": logits.tolist(),
    "generated": out[0, inputs["input_ids"].shape[1]:].tolist(),
    "text": processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True),
}))
"""


def test_export_folder_runs_in_plain_transformers(tmp_path):
    from geoassist.export import export_hf_llava

    model = _variant(seed=5, lora=True)
    out = export_hf_llava(model, tmp_path / "llava")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    result = subprocess.run(
        [sys.executable, "-c", _PLAIN_TRANSFORMERS, str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    ids = torch.tensor([got["input_ids"]])
    pixels = torch.tensor(got["pixel_values"]).reshape(1, 3, 32, 32)
    with torch.no_grad():
        ours = model(ids, pixels).logits[0, -1]
    torch.testing.assert_close(
        torch.tensor(got["last_logits"])[: ours.shape[0]], ours, atol=ATOL, rtol=RTOL
    )
    assert (
        got["generated"] == model.generate(ids, None, pixels, max_new_tokens=6, min_new_tokens=6)[0]
    )


def test_export_refuses_to_overwrite(tmp_path):
    from geoassist.export import ExportError, export_hf_llava

    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_hf_llava(_variant(), out)
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_export(tmp_path, capsys):
    from geoassist.cli import main

    assert main(["export", "tiny", "--format", "hf-llava", "--out", str(tmp_path / "e")]) == 0
    assert "wrote hf-llava model" in capsys.readouterr().out
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert main(["export", "tiny", "--out", str(tmp_path / "e")]) == 1  # exists, no --force
    assert (
        main(["export", "tiny", "--out", str(tmp_path / "e"), "--force", "--dtype", "bfloat16"])
        == 0
    )


@pytest.mark.slow
def test_mini_export_matches_geoassist_logits(tmp_path):
    """The bundled SmolLM2 LM: <image> lies beyond its vocabulary, so the export grows the table."""
    from transformers import LlavaForConditionalGeneration

    from geoassist.checkpoint import create_model
    from geoassist.export import export_hf_llava

    torch.manual_seed(0)  # the same initial and perturbed weights every run
    model = create_model("mini").eval()
    model.config.projector.token_pool = 1  # the pooled preset itself is refused; same weights
    with torch.no_grad():
        model.projector.temporal.weight.normal_(std=0.1)
        for name, p in model.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01)
    out = export_hf_llava(model, tmp_path / "mini")
    llava = LlavaForConditionalGeneration.from_pretrained(out).eval()
    assert llava.generation_config.suppress_tokens == [model.image_token_id]
    _logits_match(model, llava)


@pytest.mark.gpu
def test_vllm_serves_the_export(tmp_path):
    """On a GPU machine with vLLM installed: the exported folder loads and answers in vLLM."""
    vllm = pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from PIL import Image

    from geoassist.checkpoint import create_model
    from geoassist.export import export_hf_llava

    model = create_model("mini")
    model.config.projector.token_pool = 1
    out = export_hf_llava(model, tmp_path / "mini", dtype="bfloat16")
    llm = vllm.LLM(model=str(out), max_model_len=1024, gpu_memory_utilization=0.3)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}],
        }
    ]
    from transformers import AutoProcessor

    prompt = AutoProcessor.from_pretrained(out).apply_chat_template(
        messages, add_generation_prompt=True
    )
    image = Image.fromarray(np.zeros((256, 256, 3), dtype=np.uint8))
    outputs = llm.generate(
        {"prompt": prompt, "multi_modal_data": {"image": image}},
        vllm.SamplingParams(max_tokens=8, temperature=0.0),
    )
    assert outputs[0].outputs[0].token_ids


def test_a_region_decoder_is_not_exported_and_seg_is_never_written(tmp_path, caplog):
    """The documented behaviour (README, export --help): the LM exports exactly, the decoder does
    not, and the exported model cannot write ``<seg>`` even where GeoAssist's would."""
    from geoassist.config import RegionDecoderConfig
    from geoassist.export import build_hf_llava, export_hf_llava

    model = _variant(seed=2)
    model.config.region_decoder = RegionDecoderConfig(width=16)
    model._add_region_decoder(model.lm.get_input_embeddings().embedding_dim)
    with torch.no_grad():
        model.region_decoder.seg_bias.fill_(1e4)  # GeoAssist's model writes <seg> first
    llava = build_hf_llava(model)
    assert model.seg_token_id in llava.generation_config.suppress_tokens
    ids, mask, pixels = _inputs(model)
    with torch.no_grad():
        ours = model(ids, pixels, mask).logits[..., : model.seg_column]
        theirs = llava(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(theirs[..., : ours.shape[-1]][real], ours[real], atol=ATOL, rtol=RTOL)
    assert model.generate(ids, mask, pixels, max_new_tokens=1)[0] == [model.seg_token_id]
    generated = llava.generate(
        input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4, do_sample=False
    )[:, ids.shape[1] :]
    assert model.seg_token_id not in generated.tolist()[0]
    with caplog.at_level("WARNING", logger="geoassist.export"):
        out = export_hf_llava(model, tmp_path / "hf")
    assert "region decoder" in caplog.text
    assert "region decoder" in (out / "README.md").read_text()
    assert not list(out.glob("region_decoder*"))


@pytest.mark.slow
def test_the_patch32_candidate_exports_and_answers_alike(tmp_path):
    """The committed patch-32 candidate (train/candidates/geoassist-mini-p32) has one visual
    token per patch, so it exports, and the export's logits are GeoAssist's (its region decoder
    stays behind, as documented)."""
    from transformers import LlavaForConditionalGeneration

    from geoassist.checkpoint import create_model
    from geoassist.export import export_hf_llava

    folder = Path(__file__).resolve().parents[1] / "train" / "candidates" / "geoassist-mini-p32"
    model = create_model(folder).eval().float()
    assert model.config.projector.token_pool == 1
    out = export_hf_llava(model, tmp_path / "exported")
    llava = LlavaForConditionalGeneration.from_pretrained(out).eval()
    assert model.seg_token_id in llava.generation_config.suppress_tokens  # no <seg> without a decoder
    # every logit of the LM's vocabulary is GeoAssist's; the <seg> logit GeoAssist adds after
    # it has no counterpart in the export (its row there is zero, as documented)
    vocab = model.lm.get_output_embeddings().weight.shape[0]
    assert _logits_match(model, llava, vocab=vocab) == vocab + 1
