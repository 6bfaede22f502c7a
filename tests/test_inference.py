"""Inference speed-ups keep answers unchanged: the prefix cache for follow-up questions,
``min_new_tokens``, and the benchmark script's quick mode."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import noise_pngs

from geoassist.assistant import Assistant


@pytest.fixture
def model(make_tiny):
    return make_tiny(seed=4)


@pytest.fixture
def scenes(tmp_path):
    return noise_pngs(tmp_path, [f"scene_{i}.png" for i in range(2)], (48, 48), seed=3)


class Recorder:
    """Counts vision-tower runs and the number of tokens each LM call processes."""

    def __init__(self, model):
        self.vision_runs = 0
        self.lm_lengths: list[int] = []
        model.vision.register_forward_hook(self._vision)
        model.lm.register_forward_pre_hook(self._lm, with_kwargs=True)

    def _vision(self, *_):
        self.vision_runs += 1

    def _lm(self, _module, _args, kwargs):
        self.lm_lengths.append(kwargs["inputs_embeds"].shape[1])

    def reset(self):
        self.vision_runs, self.lm_lengths = 0, []


def _fresh(model):
    """An assistant that never reuses anything: the reference answers."""
    assistant = Assistant(model)
    assistant.reuse_prefix = False
    return assistant


def test_follow_up_reuses_the_image_and_the_first_turn(model, scenes):
    assistant = Assistant(model)
    recorder = Recorder(model)
    first = assistant.ask(scenes[0], "Describe the image.", max_new_tokens=8)
    assert recorder.vision_runs == 1
    recorder.reset()
    follow = assistant.ask(scenes[0], "Where?", history=first.history, max_new_tokens=8)
    assert recorder.vision_runs == 0  # image features come from the cache
    reused_prefill = recorder.lm_lengths[0]
    recorder.reset()
    reference = _fresh(model).ask(scenes[0], "Where?", history=first.history, max_new_tokens=8)
    assert follow.raw == reference.raw
    # Only the new turn is prefilled: not the image, the system prompt or the first turn.
    assert reused_prefill <= 30
    assert recorder.lm_lengths[0] - reused_prefill > model.config.num_image_tokens + 40


def test_another_question_on_the_same_image_reuses_the_image(model, scenes):
    assistant = Assistant(model)
    recorder = Recorder(model)
    assistant.ask(scenes[0], "Describe the image.", max_new_tokens=4)
    recorder.reset()
    second = assistant.ask(scenes[0], "How many ships are there?", max_new_tokens=6)
    assert recorder.vision_runs == 0
    full = recorder.lm_lengths[0]
    recorder.reset()
    reference = _fresh(model).ask(scenes[0], "How many ships are there?", max_new_tokens=6)
    assert second.raw == reference.raw
    assert full < recorder.lm_lengths[0] - model.config.num_image_tokens


def test_a_different_image_is_not_confused_with_the_cached_one(model, scenes):
    assistant = Assistant(model)
    recorder = Recorder(model)
    assistant.ask(scenes[0], "Describe the image.", max_new_tokens=4)
    recorder.reset()
    other = assistant.ask(scenes[1], "Describe the image.", max_new_tokens=6)
    assert recorder.vision_runs == 1
    assert other.raw == _fresh(model).ask(scenes[1], "Describe the image.", max_new_tokens=6).raw


def test_streaming_and_abandoned_streams_keep_the_cache_consistent(model, scenes):
    assistant = Assistant(model)
    stream = assistant.ask(scenes[0], "Describe the image.", max_new_tokens=10, stream=True)
    first_piece = next(iter(stream))
    assert first_piece
    del stream  # abandoned mid-answer
    complete = assistant.ask(scenes[0], "Describe the image.", max_new_tokens=10, stream=True)
    text = "".join(complete)
    follow = assistant.ask(scenes[0], "And?", history=complete.answer.history, max_new_tokens=6)
    reference = _fresh(model)
    assert text.strip() == complete.answer.raw
    assert (
        complete.answer.raw
        == reference.ask(scenes[0], "Describe the image.", max_new_tokens=10).raw
    )
    assert (
        follow.raw
        == reference.ask(scenes[0], "And?", history=complete.answer.history, max_new_tokens=6).raw
    )


def test_text_only_questions_reuse_the_system_prompt(model):
    assistant = Assistant(model)
    recorder = Recorder(model)
    assistant.ask(None, "What is NDVI?", max_new_tokens=3)
    recorder.reset()
    answer = assistant.ask(None, "What is SAR?", max_new_tokens=5)
    assert answer.raw == _fresh(model).ask(None, "What is SAR?", max_new_tokens=5).raw
    assert recorder.lm_lengths[0] <= len("SAR?") + len("<|im_end|>\n<|im_start|>assistant\n")


def test_concurrent_requests_run_without_the_cache_instead_of_sharing_it(model, scenes):
    assistant = Assistant(model)
    prefix = assistant._prefix_cache()
    prefix.lock.acquire()  # another thread is mid-request
    try:
        recorder = Recorder(model)
        answer = assistant.ask(scenes[0], "Describe the image.", max_new_tokens=5)
        assert recorder.vision_runs == 1 and prefix.ids == []
    finally:
        prefix.lock.release()
    assert answer.raw == _fresh(model).ask(scenes[0], "Describe the image.", max_new_tokens=5).raw
    results = {}

    def ask(i):
        results[i] = assistant.ask(scenes[i % 2], f"Question {i}?", max_new_tokens=5).raw

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reference = _fresh(model)
    for i in range(4):
        assert results[i] == reference.ask(scenes[i % 2], f"Question {i}?", max_new_tokens=5).raw


def test_min_new_tokens_forces_the_answer_length(model):
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    model_end = model.end_token_id
    # Make the end token the greedy choice, then ask for at least 6 tokens.
    with torch.no_grad():
        model.lm.lm_head.weight[model_end] += 100 * model.lm.model.norm.weight.sign()
    rows = model.generate(ids, max_new_tokens=10)
    assert rows[0][-1] == model_end and len(rows[0]) < 6
    rows = model.generate(ids, max_new_tokens=10, min_new_tokens=6)
    assert len(rows[0]) >= 6 and model_end not in rows[0][:6]
    assert logits.shape[0] == model.lm.lm_head.weight.shape[0]
