"""The bundled SmolLM2-135M-Instruct: GGUF → cached safetensors → a sensible text-only answer."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # converts the GGUF once (~30 s on two cores) when no cache exists


def test_mini_answers_a_text_only_question():
    from geoassist.assistant import Assistant
    from geoassist.model.lm import SMOLLM2_CACHE_NAME, cache_dir

    assistant = Assistant.from_pretrained("mini", device="cpu")
    assert (cache_dir() / "lm" / SMOLLM2_CACHE_NAME / "model.safetensors").is_file()
    assert assistant.model.has_lora
    answer = assistant.ask(
        None, "What is the capital of France? Answer in one short sentence.", max_new_tokens=24
    )
    assert "paris" in answer.text.lower(), answer.raw


def test_mini_matches_plain_transformers_on_text(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from geoassist.checkpoint import create_model
    from geoassist.model.lm import smollm2_folder

    model = create_model("mini")
    plain = AutoModelForCausalLM.from_pretrained(str(smollm2_folder()))
    ids = model.tokenizer(
        "Sentinel-2 has thirteen spectral bands.", add_special_tokens=False, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids).logits, plain(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )
