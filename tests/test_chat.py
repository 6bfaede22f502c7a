"""Chat rendering: exactly the assistant answers (and their end token) are supervised."""

from __future__ import annotations

import pytest

from geoassist.chat import IGNORE_INDEX, render, show_supervision, with_image_slots
from geoassist.errors import ChatRenderError, ContextTooLongError, ImageSlotMismatchError

N_IMG = 16


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return tiny_model.tokenizer


def _supervised_text(rendered, tokenizer) -> str:
    return tokenizer.decode(
        [
            t
            for t, lab in zip(rendered.input_ids, rendered.labels, strict=True)
            if lab != IGNORE_INDEX
        ]
    )


def test_only_assistant_turns_and_end_tokens_are_supervised(tokenizer):
    conv = [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": "<image>\nHow many ships?"},
        {"role": "assistant", "content": "Three."},
        {"role": "user", "content": "And planes?"},
        {"role": "assistant", "content": "None."},
    ]
    r = render(conv, tokenizer, num_image_tokens=N_IMG, num_images=1)
    shown = show_supervision(r, tokenizer, color=False)
    assert _supervised_text(r, tokenizer) == "Three.<|im_end|>None.<|im_end|>", shown
    assert shown.count("⟦") == 4, shown
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert r.input_ids.count(image_id) == N_IMG
    assert all(
        lab == IGNORE_INDEX for t, lab in zip(r.input_ids, r.labels, strict=True) if t == image_id
    ), shown
    assert len(r.input_ids) == len(r.labels)


def test_context_only_assistant_turn_is_not_supervised(tokenizer):
    conv = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Earlier answer.", "train": False},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Target."},
    ]
    r = render(conv, tokenizer, num_image_tokens=N_IMG)
    assert _supervised_text(r, tokenizer) == "Target.<|im_end|>", show_supervision(
        r, tokenizer, color=False
    )


def test_generation_prompt_is_open_assistant_header(tokenizer):
    r = render(
        [{"role": "user", "content": "Hi"}],
        tokenizer,
        num_image_tokens=N_IMG,
        add_generation_prompt=True,
    )
    assert tokenizer.decode(r.input_ids).endswith("<|im_start|>assistant\n")
    assert r.num_supervised == 0


def test_rendering_equals_chatml_text_for_text_only(tokenizer):
    conv = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "A."},
    ]
    r = render(conv, tokenizer, num_image_tokens=N_IMG)
    expected = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"
    assert tokenizer.decode(r.input_ids) == expected


def test_user_text_cannot_inject_control_tokens(tokenizer):
    r = render([{"role": "user", "content": "x<|im_end|>y"}], tokenizer, num_image_tokens=N_IMG)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert r.input_ids.count(end_id) == 1  # only the real end of the turn


@pytest.mark.parametrize("slots,images", [(1, 2), (2, 1), (0, 1)])
def test_image_slot_mismatch_raises(tokenizer, slots, images):
    conv = [{"role": "user", "content": "<image>" * slots + "Describe."}]
    with pytest.raises(ImageSlotMismatchError):
        render(conv, tokenizer, num_image_tokens=N_IMG, num_images=images)


def test_image_in_assistant_turn_raises(tokenizer):
    with pytest.raises(ImageSlotMismatchError):
        render([{"role": "assistant", "content": "<image>"}], tokenizer, num_image_tokens=N_IMG)


def test_truncation_keeps_images_or_raises(tokenizer):
    conv = [
        {"role": "user", "content": "<image>\nQ"},
        {"role": "assistant", "content": "a long answer " * 20},
    ]
    full = render(conv, tokenizer, num_image_tokens=N_IMG)
    cut = render(conv, tokenizer, num_image_tokens=N_IMG, max_length=len(full) - 50)
    assert len(cut) == len(full) - 50 and cut.input_ids == full.input_ids[: len(cut)]
    with pytest.raises(ContextTooLongError, match="image tokens"):
        render(conv, tokenizer, num_image_tokens=N_IMG, max_length=10)
    with pytest.raises(ContextTooLongError, match="shorten"):
        render(
            conv[:1], tokenizer, num_image_tokens=N_IMG, max_length=10, add_generation_prompt=True
        )


def test_with_image_slots():
    assert with_image_slots("Q", 2) == "<image><image>\nQ"
    assert with_image_slots("Before <image> after <image> Q", 2) == "Before <image> after <image> Q"
    assert with_image_slots("Q", 0) == "Q"


def test_bad_roles_are_reported(tokenizer):
    with pytest.raises(ChatRenderError, match="role"):
        render([{"role": "robot", "content": "x"}], tokenizer, num_image_tokens=N_IMG)
