"""The model core on the tiny preset: training signal, generation, parity with plain transformers."""

from __future__ import annotations

import time

import pytest
import torch

from geoassist.chat import collate, render, with_image_slots
from geoassist.errors import ImageSlotMismatchError
from geoassist.model.vlm import SamplingConfig


def _batch(model, prompts_answers, n_images=1, generation=False):
    rendered = []
    for prompt, answer in prompts_answers:
        conv = [{"role": "user", "content": with_image_slots(prompt, n_images)}]
        if not generation:
            conv.append({"role": "assistant", "content": answer})
        rendered.append(
            render(
                conv,
                model.tokenizer,
                num_image_tokens=model.config.num_image_tokens,
                num_images=n_images,
                add_generation_prompt=generation,
            )
        )
    return collate(rendered, model.pad_token_id)


def test_tiny_model_builds_fast(make_tiny):
    make_tiny()  # warm imports
    start = time.perf_counter()
    model = make_tiny(seed=1)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"tiny model took {elapsed:.2f}s to build"
    assert model.config.num_image_tokens == 16


def test_overfit_one_batch(make_tiny):
    model = make_tiny(seed=0).train()
    batch = _batch(model, [("What is here?", "A harbour with two ships."), ("Count cars.", "7")])
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, f"loss went {losses[0]:.3f} → {losses[-1]:.3f}"


def test_gradients_reach_vision_and_projector(make_tiny):
    model = make_tiny(seed=0).train()
    batch = _batch(model, [("Describe.", "Forest.")])
    model(
        batch["input_ids"], torch.randn(1, 3, 32, 32), batch["attention_mask"], batch["labels"]
    ).loss.backward()
    assert model.vision.visual.conv1.weight.grad.abs().sum() > 0
    assert model.projector.temporal.weight.grad[0].abs().sum() > 0


def test_kv_cache_matches_no_cache(make_tiny):
    model = make_tiny(seed=3)
    batch = _batch(
        model,
        [("Describe the image.", ""), ("Where are the ships? Give boxes.", "")],
        generation=True,
    )
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with_cache = model.generate(
        batch["input_ids"], batch["attention_mask"], pixels, max_new_tokens=12
    )
    without = model.generate(
        batch["input_ids"], batch["attention_mask"], pixels, max_new_tokens=12, use_cache=False
    )
    assert with_cache == without
    assert all(len(row) == 12 or row[-1] == model.end_token_id for row in with_cache)


def test_batched_left_padded_generation_equals_single(make_tiny):
    model = make_tiny(seed=4)
    prompts = [("Hi.", ""), ("A much longer question about the harbour in the image?", "")]
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = _batch(model, prompts, generation=True)
    together = model.generate(batch["input_ids"], batch["attention_mask"], pixels, max_new_tokens=8)
    for i, prompt in enumerate(prompts):
        single = _batch(model, [prompt], generation=True)
        alone = model.generate(
            single["input_ids"], single["attention_mask"], pixels[i : i + 1], max_new_tokens=8
        )
        assert alone[0] == together[i]


def test_sampling_is_seeded(make_tiny):
    model = make_tiny(seed=5)
    batch = _batch(model, [("Describe.", "")], generation=True)
    pixels = torch.zeros(1, 3, 32, 32)
    sampling = SamplingConfig(do_sample=True, temperature=1.0, top_k=50, top_p=0.9)
    runs = [
        model.generate(
            batch["input_ids"],
            batch["attention_mask"],
            pixels,
            max_new_tokens=10,
            sampling=sampling,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_wrapper_matches_plain_transformers_logits(make_tiny):
    model = make_tiny(seed=6)
    ids = model.tokenizer(
        "A text-only prompt about rivers.", add_special_tokens=False, return_tensors="pt"
    ).input_ids
    ours = model(ids).logits
    plain = model.lm(input_ids=ids).logits
    torch.testing.assert_close(ours, plain, rtol=0, atol=0)
    # Left padding must not change the logits of the real tokens.
    pad = torch.full((1, 5), model.pad_token_id)
    padded = torch.cat([pad, ids], dim=1)
    mask = torch.cat([torch.zeros_like(pad), torch.ones_like(ids)], dim=1)
    torch.testing.assert_close(
        model(padded, attention_mask=mask).logits[:, 5:], plain, rtol=1e-5, atol=1e-5
    )


def test_temporal_embedding_distinguishes_image_order(make_tiny):
    model = make_tiny(seed=7)
    torch.nn.init.normal_(model.projector.temporal.weight)
    batch = _batch(model, [("What changed?", "")], n_images=2, generation=True)
    a, b = torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    forward = model(batch["input_ids"], torch.cat([a, b]), batch["attention_mask"]).logits[:, -1]
    swapped = model(batch["input_ids"], torch.cat([b, a]), batch["attention_mask"]).logits[:, -1]
    assert not torch.allclose(forward, swapped)


def test_image_count_mismatch_raises(tiny_model):
    batch = _batch(tiny_model, [("Describe.", "x")], n_images=1)
    with pytest.raises(ImageSlotMismatchError, match="1 image slot"):
        tiny_model(batch["input_ids"], torch.randn(2, 3, 32, 32))
    with pytest.raises(ImageSlotMismatchError):
        tiny_model(batch["input_ids"], None)
    # A sequence whose image run was cut is caught too.
    with pytest.raises(ImageSlotMismatchError, match="multiple"):
        tiny_model(batch["input_ids"][:, :10], torch.randn(1, 3, 32, 32))


def test_other_input_sizes_interpolate_position_embedding(tiny_model):
    tokens = tiny_model.vision(torch.randn(1, 3, 64, 48))
    assert tokens.shape == (1, 8 * 6, 32)


def test_lora_only_trains_adapter_and_projector(make_tiny):
    model = make_tiny(seed=0, r=4, alpha=8)
    assert model.has_lora
    trainable = {n for n, p in model.lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_supervised_only_loss_equals_full_loss(make_tiny):
    model = make_tiny(seed=8, r=4)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = _batch(model, [("What is here?", "A harbour."), ("Count the cars, please.", "12")])
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    full = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"]).loss
    fast = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"], return_logits=False).loss
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
