"""The region decoder: geometry from hand-made maps, the decoder listening to the LM, the
``<seg>`` token through rendering, generation and answers, and checkpoints with and without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoassist.chat import Message, collate, render
from geoassist.config import ModelConfig, RegionDecoderConfig, load_preset
from geoassist.errors import CheckpointError, ConfigError
from geoassist.model.region_decoder import (
    REGION_DECODER_FILE,
    SEG_TOKEN,
    RegionDecoderError,
    decode_regions,
)
from geoassist.model.region_geometry import (
    angle_from_map,
    decode_query,
    instances_from_maps,
    mask_from_logits,
)


def build_decoder_model(seed: int = 0, **settings):
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = load_preset("tiny")
    config.region_decoder = RegionDecoderConfig(**{"width": 16, **settings})
    torch.manual_seed(seed)
    return GeoAssistModel(config, load_tokenizer(config.lm)).eval()


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# ------------------------------------------------------------------ geometry


def hand_made_maps(grid=8):
    centre = torch.full((grid, grid), -10.0)
    size = torch.zeros(2, grid, grid)
    angle = torch.zeros(2, grid, grid)
    offset = torch.zeros(2, grid, grid)
    # instance A: cell (row 2, col 5), score 0.9, 24 x 8 px at 8 px cells, 30 degrees
    centre[2, 5] = logit(0.9)
    size[:, 2, 5] = torch.tensor([math.log(3.0), math.log(1.0)])
    angle[:, 2, 5] = torch.atanh(torch.tensor([math.sin(math.radians(60)), math.cos(math.radians(60))]))
    # instance B: cell (6, 1), score 0.6, 16 x 16 px, no angle, centre at 1/4 of its cell
    centre[6, 1] = logit(0.6)
    centre[6, 2] = logit(0.5)  # a shoulder of B, not a peak
    size[:, 6, 1] = math.log(2.0)
    angle[:, 6, 1] = torch.atanh(torch.tensor([0.0, 0.999]))
    offset[:, 6, 1] = torch.tensor([logit(0.25), logit(0.25)])
    # a peak under the threshold
    centre[0, 0] = logit(0.2)
    return centre, size, angle, offset


def test_known_peaks_give_known_boxes_and_angles():
    centre, size, angle, offset = hand_made_maps()
    found = instances_from_maps(
        centre, size, angle, offset=offset, input_size=64, threshold=0.3, limit=10
    )
    assert [round(i.score, 3) for i in found] == [0.9, 0.6]
    a, b = found
    # A: no offset given for its cell -> logit 0 -> the middle of cell (2, 5)
    assert (a.cx, a.cy) == pytest.approx((5.5 * 8, 2.5 * 8))
    assert (a.w, a.h) == pytest.approx((24.0, 8.0))
    assert a.angle_deg == pytest.approx(30.0, abs=1e-3)
    corners = a.corners()
    assert a.box == pytest.approx((*corners.min(axis=0), *corners.max(axis=0)))
    # a 24 x 8 box turned 30 degrees spans 24 cos30 + 8 sin30 = 24.78 px across
    assert a.box[2] - a.box[0] == pytest.approx(24 * math.cos(math.radians(30)) + 8 * 0.5, abs=1e-3)
    assert (b.cx, b.cy) == pytest.approx(((1 + 0.25) * 8, (6 + 0.25) * 8))
    assert b.box == pytest.approx((2.0, 42.0, 18.0, 58.0), abs=1e-2)
    assert b.angle_deg == pytest.approx(0.0, abs=0.1)


def test_limit_threshold_and_angle_wrap():
    centre, size, angle, offset = hand_made_maps()
    assert len(instances_from_maps(centre, size, angle, input_size=64, threshold=0.3, limit=1)) == 1
    assert len(instances_from_maps(centre, size, angle, input_size=64, threshold=0.1, limit=9)) == 3
    assert angle_from_map(math.sin(math.radians(-170)), math.cos(math.radians(-170))) == pytest.approx(-85.0)
    assert angle_from_map(0.0, -1.0) == pytest.approx(-90.0)


def test_decode_query_scales_to_the_image_and_masks():
    centre, size, angle, offset = hand_made_maps()
    mask = torch.full((1, 8, 8), -5.0)
    mask[0, 4:, :4] = 5.0
    maps = {
        "centre": centre[None, None], "box_size": size[None], "box_angle": angle[None],
        "offset": offset[None], "mask": mask[None],
    }  # fmt: skip
    result = decode_query(
        maps, 0, input_size=64, image_size=(128, 64), score_threshold=0.3, mask_threshold=0.5,
        max_instances=10,
    )  # fmt: skip
    b = result.instances[1]
    assert b.box == pytest.approx((4.0, 42.0, 36.0, 58.0), abs=1e-2)  # x doubled, y kept
    assert result.mask.shape == (64, 128)
    assert result.mask[40:, :56].all() and not result.mask[:24].any() and not result.mask[:, 72:].any()
    assert mask_from_logits(mask[0], (3000, 2000), 0.5).shape == (2000, 3000)


# --------------------------------------------------------- model and token


def test_config_round_trip_and_bad_values():
    config = load_preset("tiny")
    config.region_decoder = RegionDecoderConfig(width=32, max_seg_tokens=3)
    again = ModelConfig.from_json_text(config.to_json())
    assert again.region_decoder == config.region_decoder
    assert ModelConfig.from_json_text(load_preset("tiny").to_json()).region_decoder is None
    with pytest.raises(ConfigError, match="max_seg_tokens"):
        RegionDecoderConfig(max_seg_tokens=0)
    data = config.to_dict()
    data["region_decoder"] = "yes"
    with pytest.raises(ConfigError, match="region_decoder"):
        ModelConfig.from_dict(data)


def test_the_decoder_listens_to_the_seg_hidden_state():
    model = build_decoder_model()
    pixels = torch.randn(1, 3, 32, 32)
    hidden = torch.randn(2, model.region_decoder.lm_dim)
    with torch.no_grad():
        maps = decode_regions(model, pixels, hidden)
        swapped = decode_regions(model, pixels, hidden.flip(0))
        again = decode_regions(model, pixels, hidden[:1])
    for key in ("centre", "mask"):
        assert not torch.allclose(maps[key][0], maps[key][1])
        assert torch.allclose(maps[key][0], swapped[key][1], atol=1e-5)
        assert torch.allclose(maps[key][0], again[key][0], atol=1e-5)


def test_decoder_refuses_no_image_and_too_many_tokens():
    model = build_decoder_model(max_seg_tokens=2)
    hidden = torch.randn(3, model.region_decoder.lm_dim)
    with pytest.raises(RegionDecoderError, match="at most 2"):
        decode_regions(model, torch.randn(1, 3, 32, 32), hidden)
    with pytest.raises(RegionDecoderError, match="needs an image"):
        decode_regions(model, None, hidden[:1])


def conversation(answer: str) -> list[Message]:
    return [Message("system", "s"), Message("user", "<image>\n[detect] ships <seg>"), Message("assistant", answer)]


def test_seg_renders_as_one_supervised_token_in_answers_only(tiny_model):
    model = build_decoder_model()
    seg = model.seg_token_id
    assert model.tokenizer.convert_tokens_to_ids(SEG_TOKEN) == seg
    n = model.config.num_image_tokens
    r = render(conversation("<ref>ship</ref><seg> and <seg>"), model.tokenizer, num_image_tokens=n)
    positions = [i for i, t in enumerate(r.input_ids) if t == seg]
    assert len(positions) == 2  # the user's "<seg>" stays text
    assert all(r.labels[i] == seg for i in positions)
    assert model.tokenizer.decode(r.input_ids[positions[0] - 6 : positions[0]]) == "</ref>"
    # a model without a decoder reads "<seg>" as text, as before
    plain = render(conversation("<seg>"), tiny_model.tokenizer, num_image_tokens=n)
    assert tiny_model.tokenizer.decode([t for t in plain.labels if t >= 0]).startswith("<seg>")


def test_seg_logit_and_loss_paths_agree():
    model = build_decoder_model()
    n = model.config.num_image_tokens
    batch = collate([render(conversation("<ref>ship</ref><seg>"), model.tokenizer, num_image_tokens=n)],
                    model.pad_token_id)  # fmt: skip
    pixels = torch.randn(1, 3, 32, 32)
    full = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"])
    fast = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"], return_logits=False)
    assert full.logits.shape[-1] == model.seg_column + 1
    assert torch.allclose(full.loss, fast.loss, atol=1e-5)
    assert torch.allclose(full.seg_hidden, fast.seg_hidden, atol=1e-5)
    assert full.seg_hidden.shape == (1, model.region_decoder.lm_dim)


def test_generation_takes_the_hidden_state_at_each_seg_token():
    model = build_decoder_model()
    with torch.no_grad():
        model.region_decoder.seg_bias.fill_(1e4)  # every step chooses <seg>
    n = model.config.num_image_tokens
    prompt = render(conversation("")[:2], model.tokenizer, num_image_tokens=n, add_generation_prompt=True)
    ids = torch.tensor([prompt.input_ids])
    pixels = torch.randn(1, 3, 32, 32)
    for use_cache in (True, False):
        states: list[list[torch.Tensor]] = [[]]
        tokens = model.generate(ids, pixel_values=pixels, max_new_tokens=3, seg_states=states,
                                use_cache=use_cache)  # fmt: skip
        assert tokens[0] == [model.seg_token_id] * 3
        assert len(states[0]) == 3  # the last one from a pass after the last step
        with torch.no_grad():
            forced = model(torch.tensor([prompt.input_ids + tokens[0]]), pixels).seg_hidden
        assert torch.allclose(torch.stack(states[0]), forced, atol=1e-4)


# ------------------------------------------------------------------ answers


def test_region_answer_writes_geometry_at_each_token_and_keeps_the_token_in_history():
    from geoassist.answer import Answer
    from geoassist.formats import parse
    from geoassist.model.region_answer import apply_regions, region_answer

    model = build_decoder_model(max_seg_tokens=2, score_threshold=0.01)
    with torch.no_grad():
        # a flat, confident centre map: every one of the 4 x 4 cells is an instance
        model.region_decoder.centre_query.weight.zero_()
        model.region_decoder.centre_query.bias.zero_()
        model.region_decoder.centre.weight.zero_()
        model.region_decoder.centre.bias.fill_(5.0)
        model.region_decoder.mask.bias.fill_(50.0)
    tok = model.tokenizer
    seg = model.seg_token_id
    tokens = [*tok("<ref>ship</ref>").input_ids, seg, *tok(" and").input_ids, seg, seg, model.end_token_id]
    states = [torch.randn(model.region_decoder.lm_dim) for _ in range(3)]
    pixels = torch.randn(1, 3, 32, 32)
    result = region_answer(model, tokens, states, pixels, (64, 32), "detect")
    assert result.history_text == "<ref>ship</ref><seg> and<seg><seg>"
    parsed = parse(result.text, (64, 32))
    assert not parsed.errors and len(parsed.boxes) == 2 * 16  # 4 x 4 cells each, two tokens decoded
    assert parsed.boxes[0].label == "ship" and parsed.boxes[0].score is not None
    assert result.errors == ["dropped <seg> #3: more than region_decoder.max_seg_tokens (2) in one answer"]
    answer = Answer(text=parsed.text, raw=result.text, task="detect", image_size=(64, 32),
                    history=[{"role": "user", "content": "q"}, {"role": "assistant", "content": result.text}])  # fmt: skip
    apply_regions(answer, result)
    assert answer.history[-1]["content"] == result.history_text
    assert len(answer.boxes) == len(answer.obboxes) == len(answer.polygons) == 32
    assert answer.boxes[0]["label"] == "ship" and 0 < answer.boxes[0]["score"] <= 1
    assert len(answer.masks) == 2 and answer.masks[0].array.shape == (32, 64)
    one = [*tok("<ref>ship</ref>").input_ids, seg]
    refer = region_answer(model, one, states[:1], pixels, (64, 32), "refer")
    assert len(parse(refer.text, (64, 32)).boxes) == 1
    masked = region_answer(model, one, states[:1], pixels, (64, 32), "segment")
    assert parse(masked.text, (64, 32)).mask.all()
    # no image: the token is dropped and said so, never raised
    blind = region_answer(model, one, states[:1], None, None, "detect")
    assert blind.text == "<ref>ship</ref>" and "no image" in blind.errors[0]
    assert region_answer(model, tok("none").input_ids, [], pixels, (64, 32), "detect") is None


# --------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_mismatches(tmp_path, tiny_model):
    import json

    from geoassist.checkpoint import load_checkpoint, save_checkpoint

    model = build_decoder_model()
    folder = save_checkpoint(model, tmp_path / "with")
    assert (folder / REGION_DECODER_FILE).is_file()
    loaded = load_checkpoint(folder)
    assert loaded.seg_token_id == model.seg_token_id
    for name, value in model.region_decoder.state_dict().items():
        assert torch.equal(value, loaded.region_decoder.state_dict()[name]), name
    # a checkpoint without a decoder loads and behaves as before
    plain = load_checkpoint(save_checkpoint(tiny_model, tmp_path / "plain"))
    assert plain.region_decoder is None and plain.seg_token_id is None
    # the decoder file with a config that has no section for it: a clear error
    config = json.loads((folder / "config.json").read_text())
    config["region_decoder"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no region_decoder section"):
        load_checkpoint(folder)
    # the section without the file
    other = save_checkpoint(model, tmp_path / "missing")
    (other / REGION_DECODER_FILE).unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        load_checkpoint(other)


def test_loading_decoder_weights_into_a_model_without_one(tmp_path, tiny_model):
    from geoassist.checkpoint import save_checkpoint
    from geoassist.model.region_decoder import load_region_decoder_weights

    folder = save_checkpoint(build_decoder_model(), tmp_path / "with")
    with pytest.raises(CheckpointError, match="nowhere to load it"):
        load_region_decoder_weights(tiny_model.region_decoder, folder)
    wider = build_decoder_model(width=24)
    with pytest.raises(CheckpointError, match="do not match"):
        load_region_decoder_weights(wider.region_decoder, folder)
    # a file cut short
    path = folder / REGION_DECODER_FILE
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_region_decoder_weights(build_decoder_model().region_decoder, folder)


def test_warm_start_from_dense_heads():
    from geoassist.model.dense_heads import DenseHeads, DenseHeadsConfig
    from geoassist.model.region_decoder import warm_start_from_dense_heads

    model = build_decoder_model()
    heads = DenseHeads(DenseHeadsConfig(width=16), model.vision.width)
    copied = warm_start_from_dense_heads(model.region_decoder, heads)
    assert copied == ["fine", "box_size", "box_angle", "centre", "pair_fuse"]
    assert torch.equal(model.region_decoder.box_angle.weight, heads.box_angle.weight)
    assert torch.allclose(model.region_decoder.centre.weight[0], heads.centre.weight.mean(0))
    other = DenseHeads(DenseHeadsConfig(width=32), model.vision.width)
    assert warm_start_from_dense_heads(model.region_decoder, other) == []


def test_pairs_decode_from_both_images():
    model = build_decoder_model()
    hidden = torch.randn(1, model.region_decoder.lm_dim)
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        pair = decode_regions(model, torch.cat([a, b]), hidden)["mask"]
        other = decode_regions(model, torch.cat([b, b]), hidden)["mask"]
        single = decode_regions(model, b, hidden)["mask"]
    assert not torch.allclose(pair, other) and not torch.allclose(pair, single)
    assert np.isfinite(pair.numpy()).all()


def test_decoding_after_generation_reuses_the_towers_output():
    model = build_decoder_model()
    calls = []
    model.vision.register_forward_hook(lambda *_: calls.append(1))
    n = model.config.num_image_tokens
    prompt = render(conversation("")[:2], model.tokenizer, num_image_tokens=n, add_generation_prompt=True)
    pixels = torch.randn(1, 3, 32, 32)
    model.generate(torch.tensor([prompt.input_ids]), pixel_values=pixels, max_new_tokens=2)
    hidden = torch.randn(1, model.region_decoder.lm_dim)
    with torch.no_grad():
        reused = decode_regions(model, pixels, hidden)
        assert len(calls) == 1
        fresh = decode_regions(model, pixels.clone(), hidden)  # other images: the tower runs
    assert len(calls) == 2
    assert torch.allclose(reused["mask"], fresh["mask"], atol=1e-5)


def test_a_batched_detect_request_runs_the_tower_once_per_image():
    from geoassist.assistant import Assistant

    model = build_decoder_model(score_threshold=0.01)
    with torch.no_grad():
        model.region_decoder.seg_bias.fill_(1e4)  # every step writes <seg>
    assistant = Assistant(model)
    assistant.reuse_prefix = False
    images_seen: list[int] = []
    model.vision.register_forward_hook(lambda _m, a, _o: images_seen.append(a[0].shape[0]))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    requests = [{"image": im, "prompt": "ships", "task": "detect"} for im in images]
    batched = assistant.ask_batch(requests, batch_size=3, max_new_tokens=2)
    assert images_seen == [3]  # one pass for the batch: generation and decoder share it
    assert all(a.boxes and "<seg>" in a.history[-1]["content"] for a in batched)
    images_seen.clear()
    single = [assistant.ask(**r, max_new_tokens=2) for r in requests]
    assert images_seen == [1, 1, 1]
    # each request decoded from its own image's features, as when asked alone
    for got, want in zip(batched, single, strict=True):
        assert got.raw == want.raw
        assert len(got.boxes) == len(want.boxes)
        assert np.allclose([b["box"] for b in got.boxes], [b["box"] for b in want.boxes], atol=1e-3)
    assert batched[0].raw != batched[1].raw  # the images differ, so must their answers


def test_given_tower_output_is_used_and_must_match_the_images():
    from geoassist.errors import ImageSlotMismatchError

    model = build_decoder_model()
    pixels = torch.randn(1, 3, 32, 32)
    hidden = torch.randn(1, model.region_decoder.lm_dim)
    with torch.no_grad():
        features = model.vision(pixels)
        calls = []
        model.vision.register_forward_hook(lambda *_: calls.append(1))
        given = decode_regions(model, pixels, hidden, vision_features=features)
        assert calls == []
        assert torch.allclose(given["mask"], decode_regions(model, pixels.clone(), hidden)["mask"])
        with pytest.raises(RegionDecoderError, match="exactly the images"):
            decode_regions(model, pixels, hidden, vision_features=torch.cat([features, features]))
    n = model.config.num_image_tokens
    prompt = render(conversation("")[:2], model.tokenizer, num_image_tokens=n, add_generation_prompt=True)
    with pytest.raises(ImageSlotMismatchError, match="exactly these images"):
        next(model.generate_steps(torch.tensor([prompt.input_ids]), pixel_values=pixels,
                                  vision_features=torch.cat([features, features])))  # fmt: skip


def test_a_prefix_cache_hit_decodes_regions_without_running_the_tower(one_torch_thread):
    from geoassist.assistant import Assistant

    model = build_decoder_model(score_threshold=0.01)
    with torch.no_grad():
        model.region_decoder.seg_bias.fill_(1e4)  # every step writes <seg>
    assistant = Assistant(model)  # reuse_prefix is on
    images_seen: list[int] = []
    model.vision.register_forward_hook(lambda _m, a, _o: images_seen.append(a[0].shape[0]))
    rng = np.random.default_rng(0)
    image, other = (rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    ask = {"prompt": "ships", "task": "detect", "max_new_tokens": 2}
    first = assistant.ask(image, **ask)
    assert images_seen == [1] and first.boxes  # generation and decoder share one pass
    again = assistant.ask(image, **ask)  # the same image: a prefix-cache hit
    follow = assistant.ask(image, **ask, history=first.history)
    streamed = assistant.ask(image, **ask, stream=True)
    "".join(streamed)
    assert images_seen == [1]  # neither the generation nor the decoder ran the tower again
    alone = Assistant(model)
    alone.reuse_prefix = False
    want = alone.ask(image, **ask)
    assert images_seen == [1, 1]
    for got in (first, again, streamed.answer):
        assert got.raw == want.raw
        assert np.allclose([b["box"] for b in got.boxes], [b["box"] for b in want.boxes], atol=1e-4)
    assert follow.boxes
    # other images, or a cache emptied (as after training steps), run the tower again
    moved = assistant.ask(other, **ask)
    assert images_seen == [1, 1, 1] and moved.raw != first.raw
    assistant._prefix_cache().clear()
    assistant.ask(other, **ask)
    assert images_seen == [1, 1, 1, 1]
