"""The region decoder trained: records in the ``<seg>`` form, the stage-2 loss with the decoder's
terms, a tiny model that learns to answer detect and segment with geometry through
``Assistant.ask``, and the export's documented behaviour for a decoder checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from geoassist.config import RegionDecoderConfig, load_preset
from geoassist.formats import box_iou

SQUARE = (4.0, 12.0, 20.0, 28.0)  # x1, y1, x2, y2 of the bright square in the 32 px image


def build_model(seed: int = 0):
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = load_preset("tiny")
    config.region_decoder = RegionDecoderConfig(width=16, score_threshold=0.3)
    torch.manual_seed(seed)
    return GeoAssistModel(config, load_tokenizer(config.lm))


@pytest.fixture
def records(tmp_path):
    image = np.full((32, 32, 3), 40, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in SQUARE)
    image[y1:y2, x1:x2] = 230
    Image.fromarray(image).save(tmp_path / "scene.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[y1:y2, x1:x2] = 1
    Image.fromarray(mask).save(tmp_path / "mask.png")
    meta = {"width": 32, "height": 32}
    detect = {
        "id": "t:1", "source": "t", "split": "train", "task": "detection", "images": ["scene.png"],
        "conversations": [{"role": "user", "content": "<image>\n[detect] ships"},
                          {"role": "assistant", "content": "<ref>ship</ref><box>125,375,625,875</box>"}],
        "answer": "", "targets": {"boxes": [{"label": "ship", "box": list(SQUARE)}]}, "meta": meta,
    }  # fmt: skip
    segment = {
        **detect, "id": "t:2", "task": "refer_seg",
        "conversations": [{"role": "user", "content": "<image>\n[segment] all ships"},
                          {"role": "assistant", "content": "<mask>2x2|1,0;1,0</mask>"}],
        "targets": {"mask": "mask.png", "mask_values": [1], "boxes": [{"label": "ship", "box": list(SQUARE)}]},
    }  # fmt: skip
    absent = {
        **detect, "id": "t:3", "task": "referring",
        "conversations": [{"role": "user", "content": "<image>\n[refer] the plane"},
                          {"role": "assistant", "content": "none"}],
        "targets": {"boxes": [], "count": 0},
    }  # fmt: skip
    caption = {**detect, "id": "t:4", "task": "caption", "targets": {}}
    return tmp_path, [detect, segment, absent, caption]


def test_records_in_the_seg_form(records):
    from geoassist.train.region_data import seg_form, with_seg_answer

    root, (detect, segment, absent, caption) = records
    answer, targets = seg_form(detect, root, 32)
    assert answer == "<ref>ship</ref><seg>" and len(targets) == 1
    assert targets[0].instances == [pytest.approx((12.0, 20.0, 16.0, 16.0, 0.0))]
    assert targets[0].mask is None
    answer, targets = seg_form(segment, root, 64)  # the decoder's input is twice the image
    assert answer == "<seg>" and targets[0].mask.sum() == 32 * 32
    assert targets[0].instances == [pytest.approx((24.0, 40.0, 32.0, 32.0, 0.0))]
    assert seg_form(absent, root, 32) == ("none", [])
    assert seg_form(caption, root, 32) is None
    assert with_seg_answer(detect, "<seg>")["conversations"][1]["content"] == "<seg>"
    assert detect["conversations"][1]["content"].startswith("<ref>ship</ref><box>")


def test_a_mask_given_as_rle_is_a_region_target_too(records):
    """refer_seg records of the segmentation and user recipes carry their mask as ``mask_rle``."""
    from geoassist.rle import mask_to_rle
    from geoassist.train.region_data import seg_form

    root, (_, segment, _, _) = records
    truth = np.zeros((32, 32), bool)
    truth[12:28, 4:20] = True
    rle = {**segment, "targets": {"mask_rle": mask_to_rle(truth), "boxes": segment["targets"]["boxes"]}}
    answer, targets = seg_form(rle, root, 32)
    assert answer == "<seg>" and np.array_equal(targets[0].mask, truth)
    assert targets[0].instances == [pytest.approx((12.0, 20.0, 16.0, 16.0, 0.0))]
    empty = {**segment, "targets": {"mask_rle": mask_to_rle(np.zeros((32, 32), bool))}}
    assert seg_form(empty, root, 32) == ("none", [])


def dataset_of(model, root, records):
    from geoassist.train.data import ConversationDataset, Sample
    from geoassist.train.region_stage import region_dataset

    base = ConversationDataset(
        [Sample(r, root) for r in records], model.config, model.tokenizer, max_length=512,
        captions_only=False,
    )  # fmt: skip
    return region_dataset(base, model)


def test_stage2_loss_adds_the_decoder_terms_and_falls(records):
    from geoassist.train.data import collate_conversations
    from geoassist.train.region_data import collate_with_regions, region_batch_loss
    from geoassist.train.region_stage import pretrain_region_decoder

    root, recs = records
    model = build_model()
    data = dataset_of(model, root, recs)
    batch = collate_with_regions(collate_conversations(model.pad_token_id))([data[i] for i in range(4)])
    assert [len(r) for r in batch["regions"]] == [1, 1, 0, 0]
    seg = model.seg_token_id
    assert (batch["labels"] == seg).sum() == 2  # the <seg> tokens are supervised, the digits gone
    assert "125,375" not in model.tokenizer.decode(batch["input_ids"][0].tolist())
    out = model(batch["input_ids"], batch["pixel_values"], batch["attention_mask"], batch["labels"],
                return_logits=False)  # fmt: skip
    loss, terms = region_batch_loss(model, batch, out.seg_hidden)
    assert set(terms) == {"centre", "box_l1", "giou", "mask_bce", "mask_dice"}
    assert torch.isfinite(loss)
    losses = pretrain_region_decoder(model, data, steps=40, batch_size=2, lr=3e-3)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_tiny_model_answers_detect_and_segment_with_geometry(records, tmp_path):
    from geoassist.assistant import Assistant
    from geoassist.checkpoint import save_checkpoint
    from geoassist.train.data import collate_conversations
    from geoassist.train.region_data import collate_with_regions, region_batch_loss

    root, recs = records
    model = build_model(seed=1)
    data = dataset_of(model, root, recs[:3])
    batch = collate_with_regions(collate_conversations(model.pad_token_id))([data[i] for i in range(3)])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        out = model(batch["input_ids"], batch["pixel_values"], batch["attention_mask"], batch["labels"],
                    return_logits=False)  # fmt: skip
        loss = out.loss + region_batch_loss(model, batch, out.seg_hidden)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = save_checkpoint(model, tmp_path / "trained")
    assistant = Assistant.from_pretrained(folder, device="cpu")
    image = root / "scene.png"
    found = assistant.ask(image, "ships", task="detect", max_new_tokens=24)
    assert found.history[-1]["content"] == "<ref>ship</ref><seg>"
    assert "<box>" in found.raw and found.boxes
    best = found.boxes[0]
    assert best["label"] == "ship" and 0.3 <= best["score"] <= 1.0
    assert box_iou(best["box"], SQUARE) > 0.5
    assert found.obboxes and found.polygons
    outlined = assistant.ask(image, "all ships", task="segment", max_new_tokens=24)
    assert "<mask>" in outlined.raw and len(outlined.masks) == 1
    mask = outlined.masks[0].array
    truth = np.zeros((32, 32), bool)
    truth[12:28, 4:20] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5
    assert assistant.ask(image, "the plane", task="refer", max_new_tokens=24).text.lower().startswith("none")
    # a decoded answer serialises as any other
    assert len(json.loads(found.to_json())["boxes"]) == len(found.boxes)
    # batches (geoassist batch, eval predictions) and streams decode the same way
    batched = assistant.ask_batch([{"image": image, "prompt": "ships", "task": "detect"},
                                   {"image": image, "prompt": "all ships", "task": "segment"}],
                                  max_new_tokens=24)  # fmt: skip
    assert batched[0].raw == found.raw and len(batched[1].masks) == 1
    stream = assistant.ask(image, "ships", task="detect", max_new_tokens=24, stream=True)
    shown = "".join(stream)  # the pieces are the text as it comes; <seg> itself is not shown
    assert "<seg>" not in shown
    assert stream.answer.raw == found.raw
    # the history with <seg> renders back into the same token for a follow-up
    follow = assistant.ask(image, "ships", task="detect", history=found.history, max_new_tokens=24)
    assert follow.boxes


def test_stage2_entry_point_adds_trains_and_saves_the_decoder(tmp_path, records, monkeypatch, caplog):
    import geoassist.train.trainer as trainer
    from geoassist.checkpoint import load_checkpoint
    from geoassist.model.region_decoder import REGION_DECODER_FILE
    from geoassist.train.config import config_from_dict
    from geoassist.train.data import Sample

    root, recs = records
    monkeypatch.setattr(trainer, "load_samples", lambda *a, **k: [Sample(r, root) for r in recs])
    config = config_from_dict({
        "stage": 2, "model": "tiny", "out_dir": str(tmp_path / "run"), "data": {"train": ["toy"]},
        "optim": {"max_steps": 8, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
        "stage2": {"region_decoder": {"width": 16}, "region_pretrain_steps": 3},
        "save_every": 8, "log_every": 1, "seed": 0,
    })  # fmt: skip
    caplog.set_level("INFO", logger="geoassist.train.trainer")
    result = trainer.train(config)
    assert any("region decoder pretrained for 3 steps" in m for m in caplog.messages)
    # the pretraining trains the decoder alone, then the stage's own choice comes back
    import re

    line = next(m for m in caplog.messages if m.startswith("stage 2:") and "trainable" in m)
    n_trainable = int(re.search(r"(\d+) trainable", line).group(1))
    losses = [loss for _, loss in result.losses]
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < np.mean(losses[:2])
    final = tmp_path / "run" / "final"
    assert (final / REGION_DECODER_FILE).is_file()
    model = load_checkpoint(final)
    assert n_trainable > sum(p.numel() for p in model.region_decoder.parameters()) + 1000
    assert model.region_decoder is not None and model.tokenizer.convert_tokens_to_ids("<seg>") == model.seg_token_id
    # packed stage 2 carries the decoder's targets, and the decoder pretrains on single records
    packed = config_from_dict({**config.to_dict(), "out_dir": str(tmp_path / "packed"),
                               "optim": {"max_steps": 2, "batch_size": 1, "lr": 3e-3},
                               "stage2": {"region_decoder": {"width": 16}, "region_pretrain_steps": 2,
                                          "packing": True, "pack_conversations": True}})  # fmt: skip
    caplog.clear()
    result = trainer.train(packed)
    assert any("region decoder pretrained for 2 steps" in m for m in caplog.messages)
    assert result.step == 2 and all(np.isfinite([loss for _, loss in result.losses]))
    # with the frozen tower's features cached, the conv8 decoder still reads the pixels
    cached = config_from_dict({**packed.to_dict(), "out_dir": str(tmp_path / "cached"),
                               "stage2": {**packed.to_dict()["stage2"],
                                          "feature_cache": str(tmp_path / "features")}})  # fmt: skip
    caplog.clear()
    result = trainer.train(cached)
    assert any(m.startswith("feature cache:") for m in caplog.messages)
    assert result.step == 2 and all(np.isfinite([loss for _, loss in result.losses]))


def _second_scene(root, detect):
    """Another image, its square elsewhere, with a detection record of its own."""
    image = np.full((32, 32, 3), 40, np.uint8)
    image[2:10, 20:30] = 230
    Image.fromarray(image).save(root / "other.png")
    return {**detect, "id": "t:9", "images": ["other.png"],
            "targets": {"boxes": [{"label": "ship", "box": [20.0, 2.0, 30.0, 10.0]}]}}  # fmt: skip


def _terms(model, batch, hidden):
    from geoassist.train.region_data import region_batch_loss

    return region_batch_loss(model, batch, hidden)[1]


def _live_decoder_model():
    """A tiny model whose new decoder's fine path starts away from zero, so each scene matters."""
    model = build_model()
    with torch.no_grad():
        for param in model.region_decoder.fine.parameters():
            param.normal_(0, 0.3)
    return model


def _unpacked_and_packed(model, root, unpacked_records, packed_records):
    """The records one per row, and ``packed_records`` as one packed sequence (and its dataset)."""
    from geoassist.train.data import Sample, collate_conversations
    from geoassist.train.packing import PackedConversationDataset
    from geoassist.train.region_data import collate_with_regions
    from geoassist.train.region_stage import decoder_grid

    collate = collate_with_regions(collate_conversations(model.pad_token_id))
    unpacked = collate([dataset_of(model, root, [r])[0] for r in unpacked_records])
    packed_data = PackedConversationDataset(
        [Sample(r, root) for r in packed_records], model.config, model.tokenizer, max_length=1024, seed=0,
        pack_conversations=True, region_grid=decoder_grid(model),
    )  # fmt: skip
    assert len(packed_data) == 1
    return unpacked, collate([packed_data[0]]), packed_data


def test_packed_turns_carry_the_same_region_terms_as_their_records(records, one_torch_thread):
    from geoassist.train.stages import StageModule, stage_loss

    root, (detect, segment, absent, caption) = records
    other = _second_scene(root, detect)
    model = _live_decoder_model()
    # the two geometry turns about scene.png in one conversation, beside other.png's in one sequence
    unpacked, packed, packed_data = _unpacked_and_packed(
        model, root, (detect, segment, other), (detect, segment, absent, caption, other)
    )
    item = packed_data[0]
    assert len(item["segments"]) == 2 and packed["pixel_values"].shape[0] == 2
    assert sorted(item["tasks"]) == ["caption", "detection", "detection", "refer_seg", "referring"]
    assert (packed["input_ids"] == model.seg_token_id).sum() == 3 == len(packed["regions"][0])
    assert "none" in model.tokenizer.decode(packed["input_ids"][0].tolist())  # the absent target
    # the same <seg> states give the same decoder terms, packed or one record per row
    torch.manual_seed(0)
    states = {rid: torch.randn(model.lm.config.hidden_size) for rid in ("t:1", "t:2", "t:9")}
    kept = [r["id"] for conv in packed_data.rows[0] for r in packed_data.render(conv)[1]]
    with torch.no_grad():
        alone = _terms(model, unpacked, torch.stack([states[k] for k in ("t:1", "t:2", "t:9")]))
        together = _terms(model, packed, torch.stack([states[k] for k in kept if k in states]))
        swapped = _terms(model, packed, torch.stack([states[k] for k in reversed([k for k in kept if k in states])]))
        # and as the decoder reads each record's own image, one query at a time
        from geoassist.model.region_decoder import scene_maps
        from geoassist.train.region_loss import region_loss

        scenes = torch.cat([scene_maps(model, unpacked["pixel_values"][i : i + 1], [1]) for i in range(3)])
        hidden = torch.stack([states[k] for k in ("t:1", "t:2", "t:9")])
        targets = [t for row in unpacked["regions"] for t in row]
        reference = region_loss(model.region_decoder(scenes, hidden), targets, 32)[1]
    assert set(alone) == {"centre", "box_l1", "giou", "mask_bce", "mask_dice"}
    assert alone == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert swapped != pytest.approx(alone, rel=1e-3)  # each target stays with its own token
    loss, n = stage_loss(2, StageModule(model), packed)
    assert n == 1 and torch.isfinite(loss)


CHANGED = (18, 4, 28, 14)  # x1, y1, x2, y2 of the square that appears in the after image


@pytest.fixture
def change_record(records):
    """A ``change_seg`` record on a before/after pair (as the GeoSynth and change recipes write
    them: the change mask as ``targets.mask``, 0/255, no boxes) and the change mask itself."""
    root, _ = records
    before = np.full((32, 32, 3), 40, np.uint8)
    after = before.copy()
    x1, y1, x2, y2 = CHANGED
    after[y1:y2, x1:x2] = 230
    Image.fromarray(before).save(root / "before.png")
    Image.fromarray(after).save(root / "after.png")
    truth = np.zeros((32, 32), bool)
    truth[y1:y2, x1:x2] = True
    Image.fromarray(truth.astype(np.uint8) * 255).save(root / "change.png")
    record = {
        "id": "t:c", "source": "t", "split": "train", "task": "change_seg",
        "images": ["before.png", "after.png"],
        "conversations": [
            {"role": "user", "content": "<image><image>\n[change_seg] Outline what changed between the two images."},
            {"role": "assistant", "content": "<mask>2x2|0,1;0,0</mask>"}],
        "answer": "<mask>2x2|0,1;0,0</mask>", "targets": {"mask": "change.png", "count": 1},
        "meta": {"width": 32, "height": 32},
    }  # fmt: skip
    return record, truth


def test_a_change_seg_record_supervises_the_decoders_change_mask(records, change_record, one_torch_thread):
    from geoassist.model.region_decoder import decode_regions, scene_maps
    from geoassist.model.region_geometry import decode_query
    from geoassist.train.data import collate_conversations
    from geoassist.train.region_data import collate_with_regions, region_batch_loss, seg_form
    from geoassist.train.region_loss import region_loss

    root, _ = records
    record, truth = change_record
    answer, targets = seg_form(record, root, 64)  # the decoder's input is twice the image
    assert answer == "<seg>" and len(targets) == 1
    assert targets[0].instances == []  # the change mask names no instances
    assert np.array_equal(targets[0].mask, truth.repeat(2, axis=0).repeat(2, axis=1))
    unchanged = {**record, "targets": {"mask": "mask.png", "mask_values": [9], "count": 0}}
    assert seg_form(unchanged, root, 32) == ("none", [])  # nothing changed: no token
    # change_qa records are questions, never region records: the change mask is change_seg's
    # (the recipes once wrote it as a change_qa record with qtype "change_mask")
    question = {**record, "task": "change_qa", "qtype": "change_mask"}
    assert seg_form(question, root, 32) is None

    model = build_model()
    with torch.no_grad():  # a new decoder's fine path starts near zero: make the images matter
        for param in model.region_decoder.fine.parameters():
            param.normal_(0, 0.3)
    item = dataset_of(model, root, [record])[0]
    batch = collate_with_regions(collate_conversations(model.pad_token_id))([item])
    assert batch["pixel_values"].shape[0] == 2
    assert (batch["input_ids"] == model.seg_token_id).sum() == 1 == (batch["labels"] == model.seg_token_id).sum()
    (region,) = batch["regions"][0]
    assert torch.equal(region["mask"], torch.from_numpy(truth.astype(np.float32)))
    assert not region["reg"].any() and float(region["centre"].max()) == 0.0
    hidden = torch.randn(1, model.lm.config.hidden_size)
    with torch.no_grad():
        loss, terms = region_batch_loss(model, batch, hidden)
        # the token reads the pair's fused map (the change), not either image alone
        pair = scene_maps(model, batch["pixel_values"], [2])
        reference = region_loss(model.region_decoder(pair, hidden), [region], 32)[1]
        last = scene_maps(model, batch["pixel_values"][1:], [1])
        after_only = region_loss(model.region_decoder(last, hidden), [region], 32)[1]
    assert set(terms) == {"centre", "mask_bce", "mask_dice"} and torch.isfinite(loss)
    assert terms == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert terms["mask_bce"] != pytest.approx(after_only["mask_bce"], rel=1e-3)
    # trained on this record alone, the decoder's mask at the token outlines the change
    optimizer = torch.optim.Adam(model.region_decoder.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        region_batch_loss(model, batch, hidden)[0].backward()
        optimizer.step()
    with torch.no_grad():
        maps = decode_regions(model, batch["pixel_values"], hidden)
    outlined = decode_query(maps, 0, input_size=32, image_size=(32, 32), score_threshold=0.3,
                            mask_threshold=0.5, max_instances=8).mask  # fmt: skip
    assert (outlined & truth).sum() / (outlined | truth).sum() > 0.5


def test_packed_stage2_carries_a_change_target_like_the_others(records, change_record, one_torch_thread):
    from geoassist.train.stages import StageModule, stage_loss

    root, (detect, segment, absent, caption) = records
    record, truth = change_record
    model = _live_decoder_model()
    unpacked, packed, packed_data = _unpacked_and_packed(model, root, (detect, record), (detect, record, caption))
    item = packed_data[0]
    assert len(item["segments"]) == 2 and packed["pixel_values"].shape[0] == 3  # scene + the pair
    assert "change_seg" in item["tasks"]
    assert (packed["input_ids"] == model.seg_token_id).sum() == 2 == len(packed["regions"][0])
    kept = [r["id"] for conv in packed_data.rows[0] for r in packed_data.render(conv)[1]]
    change_target = packed["regions"][0][[k for k in kept if k in ("t:1", "t:c")].index("t:c")]
    assert torch.equal(change_target["mask"], torch.from_numpy(truth.astype(np.float32)))
    torch.manual_seed(0)
    states = {rid: torch.randn(model.lm.config.hidden_size) for rid in ("t:1", "t:c")}
    with torch.no_grad():
        alone = _terms(model, unpacked, torch.stack([states["t:1"], states["t:c"]]))
        together = _terms(model, packed, torch.stack([states[k] for k in kept if k in states]))
    assert set(alone) == {"centre", "box_l1", "giou", "mask_bce", "mask_dice"}
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-6)
    loss, n = stage_loss(2, StageModule(model), packed)
    assert n == 1 and torch.isfinite(loss)


def test_the_planning_estimate_is_the_seg_answer(records, change_record):
    """Packing plans lengths from :func:`seg_answer_estimate`, which reads no mask: it must be
    the answer :func:`seg_form` trains on."""
    from geoassist.train.region_data import seg_answer_estimate, seg_form

    root, (detect, segment, absent, caption) = records
    two_labels = {
        **detect, "id": "t:7",
        "targets": {"boxes": [{"label": "ship", "box": [1, 1, 5, 5]}, {"label": "car", "box": [9, 9, 12, 12]},
                              {"label": "ship", "box": [20, 20, 25, 25]}]},
    }  # fmt: skip
    for record in (detect, segment, absent, caption, two_labels, change_record[0]):
        form = seg_form(record, root, 32)
        assert seg_answer_estimate(record) == (None if form is None else form[0]), record["id"]
    assert seg_answer_estimate(two_labels) == "<ref>ship</ref><seg> <ref>car</ref><seg>"


def test_conversations_are_planned_by_their_seg_lengths(records):
    """With a region decoder a detection answer is a few tokens, not its written boxes, so the
    records of one image fit one conversation that a plan by the written answers would cut."""
    from geoassist.train.data import Sample
    from geoassist.train.packing import PackedConversationDataset
    from geoassist.train.region_stage import decoder_grid

    root, (detect, *_rest) = records
    boxes = [{"label": "ship", "box": [i, i, i + 2, i + 2]} for i in range(0, 28, 2)]
    written = "".join(f"<ref>ship</ref><box>{b['box'][0] * 31},{b['box'][1] * 31},{b['box'][2] * 31},{b['box'][3] * 31}</box>" for b in boxes)
    many = [
        {**detect, "id": f"t:d{k}", "targets": {"boxes": boxes},
         "conversations": [detect["conversations"][0], {"role": "assistant", "content": written}]}
        for k in range(6)
    ]  # fmt: skip
    model = build_model()
    samples = [Sample(r, root) for r in many]
    kwargs = dict(max_length=512, seed=0)
    by_text = PackedConversationDataset(samples, model.config, model.tokenizer, **kwargs)
    by_seg = PackedConversationDataset(
        samples, model.config, model.tokenizer, region_grid=decoder_grid(model), **kwargs
    )
    assert len(by_text) > 1 and len(by_seg) == 1
    rendered, kept = by_seg.render(0)
    assert len(kept) == 6 and len(rendered) <= 512 and by_seg.estimated_length(0) >= len(rendered) - 8
