"""Change: binary and semantic change detection → change QA and change masks; change captioning.

Change-detection labels become questions a user would ask about a pair: did anything change,
how many separate areas changed, how much of the scene, where (boxes of the connected
components of the label mask, M2B); and a ``change_seg`` record that outlines the changed
area (a text mask; the label is the target). Pairs without change give the negative answers
(``no``, ``0``, ``none``), so the model learns to say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.formats import format_objects
from geoassist.readers import CaptionedImage, Malformed, read_caption_images, read_change_tokens

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
)
from ..geometry import mask_to_boxes, text_mask

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _load_label(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im)
    return array


def _percent(fraction: float) -> str:
    if fraction <= 0:
        return "0%"
    if fraction < 0.005:
        return "less than 1%"
    return f"{round(fraction * 100)}%"


class _BinaryChange(Recipe):
    """Pairs in ``before/after/label`` folders; splits from ``list/<split>.txt`` or ``<split>/`` folders."""

    before_dir = "A"
    after_dir = "B"
    label_dir = "label"
    noun = "buildings"  # what changes in this dataset, for the questions

    # --- layout
    def _split_dirs(self, src: Path) -> dict[str, Path]:
        found = {}
        for d in sorted(p for p in src.iterdir() if p.is_dir()) if src.is_dir() else []:
            if (d / self.before_dir).is_dir() and (d / self.after_dir).is_dir():
                found[d.name] = d
        return found

    def _layout(self, src: Path) -> tuple[str, dict[str, Any]]:
        if (src / self.before_dir).is_dir() and (src / "list").is_dir():
            lists = {p.stem: p for p in sorted((src / "list").glob("*.txt"))}
            if lists:
                return "lists", lists
        dirs = self._split_dirs(src)
        if dirs:
            return "folders", dirs
        if (src / self.before_dir).is_dir() and (src / self.after_dir).is_dir():
            return "flat", {"all": src}
        return "none", {}

    def check(self, src: Path) -> None:
        super().check(src)
        if self._layout(src)[0] == "none":
            raise DatasetNotFoundError(
                f"{src} has no {self.before_dir}/ and {self.after_dir}/ folders; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        kind, where = self._layout(src)
        if kind == "none":
            return False
        base = next(iter(where.values()))
        base = src if kind == "lists" else base
        return (base / self.label_dir).is_dir() and self._detect_extra(base)

    def _detect_extra(self, base: Path) -> bool:
        return True

    def available_splits(self, src: Path) -> list[str]:
        return list(self._layout(src)[1])

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        kind, where = self._layout(src)
        for split in split_filter(splits, list(where), self.info.name):
            if kind == "lists":
                names = [n.strip() for n in where[split].read_text().splitlines() if n.strip()]
                base = ""
            else:
                folder = where[split]
                names = sorted(
                    p.name
                    for p in (folder / self.before_dir).iterdir()
                    if p.suffix.lower() in IMAGE_EXTS
                )
                base = "" if kind == "flat" else f"{split}/"
            for name in names:
                yield {"id": Path(name).stem, "split": split, "name": name, "base": base}

    # --- conversion
    def _paths(self, item: dict[str, Any]) -> tuple[str, str, str]:
        base, name = item["base"], item["name"]
        return (
            f"{base}{self.before_dir}/{name}",
            f"{base}{self.after_dir}/{name}",
            f"{base}{self.label_dir}/{name}",
        )

    def _change_mask(self, label: np.ndarray) -> np.ndarray:
        return (label.max(axis=-1) if label.ndim == 3 else label) > 0

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        source = self.info.name
        before, after, label_rel = self._paths(item)
        base_id = f"{source}:{item['id']}"
        for rel_path in (before, after):
            problem = ctx.reject_for(base_id, rel_path)
            if problem:
                return [problem]
        size = ctx.image_size(before)
        if ctx.image_size(after) != size:
            return [
                Reject(
                    base_id,
                    "size mismatch",
                    f"{before} is {size}, {after} is {ctx.image_size(after)}",
                )
            ]
        label_path = ctx.src / label_rel
        if not label_path.is_file():
            return [Reject(base_id, "missing mask", label_rel)]
        try:
            label = _load_label(label_path)
        except Exception as exc:
            return [Reject(base_id, "unreadable mask", f"{label_rel}: {exc}")]
        if (label.shape[1], label.shape[0]) != size:
            return [
                Reject(
                    base_id,
                    "size mismatch",
                    f"label {label.shape[1]}x{label.shape[0]}, image {size}",
                )
            ]
        mask = self._change_mask(label)
        meta = {"width": size[0], "height": size[1], "name": item["name"], **self._meta(item)}
        return self._records(item, ctx, [before, after], mask, label_rel, meta, label)

    def _meta(self, item: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _mask_targets(self, label_rel: str) -> dict[str, Any]:
        return {"mask": label_rel}

    def _records(self, item, ctx, images, mask, label_rel, meta, label) -> list[Outcome]:
        source, oid, split = self.info.name, item["id"], item["split"]
        width, height = meta["width"], meta["height"]
        min_area = int(ctx.options.get("min_component_px", 1))
        components = mask_to_boxes(mask)
        kept = [c for c in components if c["area"] >= min_area]
        outcomes: list[Outcome] = [
            Dropped(
                f"{source}:{oid}",
                "degenerate geometry",
                f"changed component of {c['area']} px < min_component_px",
            )
            for c in components
            if c["area"] < min_area
        ]
        fraction = float(mask.mean())
        meta = {**meta, "changed_fraction": round(fraction, 6), "components": len(kept)}
        mask_target = self._mask_targets(label_rel)
        boxes = [{"label": "change", "box": c["box"], "area_px": c["area"]} for c in kept]
        common = {"source": source, "split": split, "images": images, "meta": meta}
        changed = "yes" if kept else "no"
        mask_answer, grid, iou = text_mask(mask)
        outcomes += [
            make_record(
                oid=f"{oid}:change_presence",
                task="change_qa",
                argument=f"Have any {self.noun} changed between the two images?",
                answer=changed,
                qtype="change_presence",
                targets={**mask_target, "count": len(kept)},
                **common,
            ),
            make_record(
                oid=f"{oid}:change_count",
                task="change_qa",
                argument="How many separate areas changed?",
                answer=str(len(kept)),
                qtype="change_count",
                targets={**mask_target, "count": len(kept), "boxes": boxes},
                **common,
            ),
            make_record(
                oid=f"{oid}:change_ratio",
                task="change_qa",
                argument="What share of the scene changed?",
                answer=_percent(fraction),
                qtype="change_ratio",
                targets=mask_target,
                **common,
            ),
            make_record(
                oid=f"{oid}:change_where",
                task="change_qa",
                argument="Where are the changes? Give a box for each changed area.",
                answer=format_objects(
                    [{"label": "change", "box": b["box"]} for b in boxes], (width, height)
                ),
                qtype="change_where",
                targets={**mask_target, "boxes": boxes, "count": len(kept)},
                **common,
            ),
            make_record(
                oid=f"{oid}:change_seg",
                task="change_seg",
                answer=mask_answer,
                targets={**mask_target, "count": len(kept)},
                **{**common, "meta": {**meta, "mask_grid": grid, "mask_text_iou": iou}},
            ),
        ]
        outcomes += self._extra_records(item, ctx, common, mask, label, mask_target)
        return outcomes

    def _extra_records(self, item, ctx, common, mask, label, mask_target) -> list[Outcome]:
        return []


_LEVIR_CD_CITATION = "H. Chen, Z. Shi. A Spatial-Temporal Attention-Based Method and a New Dataset for Remote Sensing Image Change Detection. Remote Sensing 12(10), 2020."


@register
class LEVIRCD(_BinaryChange):
    """LEVIR-CD: 637 Google Earth pairs (0.5 m, 1024²) with building changes, often cut into 256² crops.

    Layouts read: the release's ``{train,val,test}/{A,B,label}/`` folders, and the crop layout of
    BIT/ChangeFormer (``A/``, ``B/``, ``label/`` with 0/255 PNGs and ``list/<split>.txt``; the
    split is the list's name). Checked against the real crops in
    ``rs-samples/change_detection/samples_LEVIR``. Records: change QA (``change_presence``,
    ``change_count``, ``change_ratio``, ``change_where`` with one box per connected component
    of the label) and ``change_seg`` (the change mask as text-as-mask); targets point at the
    label PNG.
    """

    info = RecipeInfo(
        name="levir_cd",
        title="LEVIR-CD",
        tasks=("change_qa", "change_seg"),
        licence="academic use only (LEVIR-CD terms)",
        citation=_LEVIR_CD_CITATION,
        layout="{train,val,test}/{A,B,label}/<name>.png, or A/ B/ label/ (0/255) + list/<split>.txt",
        splits=("train", "val", "test"),
        checked_against="real files: rs-samples/change_detection/samples_LEVIR",
        url="https://justchenhao.github.io/LEVIR/",
    )


@register
class WHUCD(_BinaryChange):
    """WHU building change detection (aerial, 0.3 m), in the A/B/label layout it is distributed in for CD models.

    The original release is two large GeoTIFF mosaics (2012, 2016) and a change raster; the
    community-standard cut (BIT/ChangeFormer) is ``A/``, ``B/``, ``label/`` 0/255 PNGs with
    ``list/{train,val,test}.txt``, or ``{train,val,test}/{A,B,label}/``. Same records as LEVIR-CD.
    Checked against BIT_CD's data-preparation description; tested on fake files in that layout.
    """

    info = RecipeInfo(
        name="whu_cd",
        title="WHU building change detection",
        tasks=("change_qa", "change_seg"),
        licence="academic use (WHU building dataset terms)",
        citation="S. Ji, S. Wei, M. Lu. Fully Convolutional Networks for Multisource Building Extraction From an Open Aerial and Satellite Imagery Data Set. IEEE TGRS 57(1), 2019.",
        layout="A/ B/ label/ (0/255) + list/<split>.txt, or {train,val,test}/{A,B,label}/",
        splits=("train", "val", "test"),
        checked_against="BIT_CD / ChangeFormer data layout (documented), fake files",
        url="https://gpcv.whu.edu.cn/data/building_dataset.html",
    )

    def detect(self, src: Path) -> bool:
        return False  # same layout as LEVIR-CD; name the recipe


@register
class DSIFNCD(_BinaryChange):
    """DSIFN-CD: Google Earth pairs over six Chinese cities with land-cover changes.

    Read in ChangeFormer's layout (``A/``, ``B/``, ``label/`` 0/255 PNGs, ``list/<split>.txt``) or
    as ``{train,val,test}/{A,B,label}/``. Checked against the real crops in
    ``rs-samples/change_detection/samples_DSIFN``.
    """

    info = RecipeInfo(
        name="dsifn_cd",
        title="DSIFN-CD",
        tasks=("change_qa", "change_seg"),
        licence="no licence stated (academic use)",
        citation="C. Zhang, P. Yue, D. Tapete et al. A deeply supervised image fusion network for change detection in high resolution bi-temporal remote sensing images. ISPRS J. 166, 2020.",
        layout="A/ B/ label/ (0/255) + list/<split>.txt, or {train,val,test}/{A,B,label}/",
        splits=("train", "val", "test"),
        checked_against="real files: rs-samples/change_detection/samples_DSIFN",
    )
    noun = "land-cover areas"

    def detect(self, src: Path) -> bool:
        return False  # same layout as LEVIR-CD; name the recipe


@register
class S2Looking(_BinaryChange):
    """S2Looking: side-looking satellite pairs (0.5–0.8 m, 1024²) of rural building changes.

    Layout (released by the authors): ``{train,val,test}/Image1/``, ``Image2/``, ``label/`` (0/255
    PNG; ``label1/`` and ``label2/`` with newly built and demolished buildings separately are
    used when present to answer which kind of change happened). Checked against the authors'
    and torchrs' descriptions of the folders; tested on fake files in that layout.
    """

    info = RecipeInfo(
        name="s2looking",
        title="S2Looking",
        tasks=("change_qa", "change_seg"),
        licence="academic use (S2Looking terms)",
        citation="L. Shen, Y. Lu, H. Chen et al. S2Looking: A Satellite Side-Looking Dataset for Building Change Detection. Remote Sensing 13(24), 2021.",
        layout="{train,val,test}/{Image1,Image2,label}/<name>.png (+ label1/ new, label2/ demolished)",
        splits=("train", "val", "test"),
        checked_against="authors' README layout (S2Looking GitHub), fake files",
        url="https://github.com/S2Looking/Dataset",
    )
    before_dir, after_dir = "Image1", "Image2"

    def _extra_records(self, item, ctx, common, mask, label, mask_target) -> list[Outcome]:
        base = item["base"]
        built = ctx.src / f"{base}label1/{item['name']}"
        gone = ctx.src / f"{base}label2/{item['name']}"
        if not (built.is_file() and gone.is_file()):
            return []
        new = (_load_label(built) > 0).any()
        demolished = (_load_label(gone) > 0).any()
        answer = {
            (True, True): "both",
            (True, False): "new buildings",
            (False, True): "demolished buildings",
            (False, False): "no change",
        }[(bool(new), bool(demolished))]
        return [
            make_record(
                oid=f"{item['id']}:change_type",
                task="change_qa",
                argument="Were buildings built, demolished, or both?",
                answer=answer,
                qtype="change_type",
                targets=mask_target,
                **common,
            )
        ]


SECOND_CLASSES = {
    (255, 255, 255): "unchanged",
    (0, 0, 255): "water",
    (128, 128, 128): "ground",
    (0, 128, 0): "low vegetation",
    (0, 255, 0): "tree",
    (128, 0, 0): "building",
    (255, 0, 0): "playground",
}


@register
class SECOND(_BinaryChange):
    """SECOND: semantic change detection (0.5–3 m, 512²) with land cover before and after where it changed.

    Layout (CAPTAIN-WHU release): ``train/{im1,im2,label1,label2}/<name>.png`` (``test/`` too when
    its labels are present). ``label1``/``label2`` are RGB maps: white = unchanged, and water
    (0,0,255), ground (128,128,128), low vegetation (0,128,0), tree (0,255,0), building
    (128,0,0), playground (255,0,0) where the land cover changed. Besides the binary change QA
    (the change mask = non-white pixels of ``label1``), a ``change_type`` record lists the
    from→to transitions by share of the scene. Checked against the palette used by Open-CD and
    SCD loaders; tested on fake files in this layout.
    """

    info = RecipeInfo(
        name="second",
        title="SECOND (semantic change detection)",
        tasks=("change_qa", "change_seg"),
        licence="academic use (SECOND terms)",
        citation="K. Yang, G.-S. Xia, Z. Liu et al. Asymmetric Siamese Networks for Semantic Change Detection in Aerial Images. IEEE TGRS 60, 2022.",
        layout="{train,test}/{im1,im2,label1,label2}/<name>.png (RGB class colours, white = unchanged)",
        splits=("train", "test"),
        checked_against="Open-CD SECOND palette and SCD loaders' layout, fake files",
        url="http://www.captain-whu.com/project/SCD/",
    )
    before_dir, after_dir, label_dir = "im1", "im2", "label1"
    noun = "land-cover areas"

    def _change_mask(self, label: np.ndarray) -> np.ndarray:
        rgb = label[..., :3] if label.ndim == 3 else np.repeat(label[..., None], 3, axis=-1)
        return ~np.all(rgb == 255, axis=-1)

    def _mask_targets(self, label_rel: str) -> dict[str, Any]:
        return {
            "mask": label_rel,
            "mask_values": [list(c) for c in SECOND_CLASSES if c != (255, 255, 255)],
        }

    def _extra_records(self, item, ctx, common, mask, label, mask_target) -> list[Outcome]:
        after_path = ctx.src / f"{item['base']}label2/{item['name']}"
        if not after_path.is_file():
            return [
                Reject(
                    f"{self.info.name}:{item['id']}:change_type",
                    "missing mask",
                    f"{item['base']}label2/{item['name']}",
                )
            ]
        after = _load_label(after_path)
        if after.shape[:2] != label.shape[:2]:
            return [
                Reject(
                    f"{self.info.name}:{item['id']}:change_type",
                    "size mismatch",
                    "label1 and label2 differ in size",
                )
            ]
        before_codes = _codes(label)
        after_codes = _codes(after)
        names = {_code(c): n for c, n in SECOND_CLASSES.items()}
        pairs, counts = (
            np.unique(
                np.stack([before_codes[mask], after_codes[mask]], axis=1),
                axis=0,
                return_counts=True,
            )
            if mask.any()
            else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
        )
        transitions = []
        unknown = 0
        for (b, a), n in sorted(
            zip(pairs.tolist(), counts.tolist(), strict=True), key=lambda t: (-t[1], t[0])
        ):
            if b not in names or a not in names:
                unknown += n
                continue
            transitions.append((names[b], names[a], n))
        outcomes: list[Outcome] = []
        if unknown:
            outcomes.append(
                Dropped(
                    f"{self.info.name}:{item['id']}",
                    "unknown class",
                    f"{unknown} changed pixels have colours outside the SECOND palette",
                )
            )
        total = mask.size
        if transitions:
            answer = "; ".join(f"{b} to {a} ({_percent(n / total)})" for b, a, n in transitions)
        else:
            answer = "no change"
        outcomes.append(
            make_record(
                oid=f"{item['id']}:change_type",
                task="change_qa",
                argument="What land cover changed into what?",
                answer=answer,
                qtype="change_type",
                targets=mask_target,
                **{
                    **common,
                    "meta": {
                        **common["meta"],
                        "transitions": [[b, a, n] for b, a, n in transitions],
                    },
                },
            )
        )
        return outcomes


def _code(rgb: tuple[int, int, int]) -> int:
    return rgb[0] * 65536 + rgb[1] * 256 + rgb[2]


def _codes(label: np.ndarray) -> np.ndarray:
    rgb = (
        label[..., :3].astype(np.int64)
        if label.ndim == 3
        else np.repeat(label[..., None], 3, axis=-1).astype(np.int64)
    )
    return rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]


# --------------------------------------------------------------------------- change captioning

_LEVIR_CC_CITATION = (
    "C. Liu, R. Zhao, H. Chen, Z. Zou, Z. Shi. Remote Sensing Image Change Captioning With Dual-Branch "
    "Transformers: A New Method and a Large Scale Dataset. IEEE TGRS 60, 2022."
)


def clean_caption(text: str) -> str:
    """A released caption as a sentence: spaces tidied, the tokeniser's `` .`` joined, a capital and a full stop."""
    text = " ".join(
        str(text).replace("<START>", " ").replace("<END>", " ").replace("<NULL>", " ").split()
    )
    text = re.sub(r"\s+([.,;:!?])", r"\1", text).strip().rstrip(".").strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + "."


@register
class LEVIRCC(Recipe):
    """LEVIR-CC: 10,077 LEVIR-CD-derived pairs, five change captions each, and whether anything changed.

    Layouts read: the release's ``LevirCCcaptions.json`` (Karpathy-style ``images`` with
    ``filepath``, ``filename``, ``split``, ``sentences[].raw`` and ``changeflag``) with
    ``images/<split>/{A,B}/<filename>``; and LEVIR-MCI's preprocessed form, ``A/``, ``B/`` and
    ``tokens/<name>.txt`` (a JSON list of token lists wrapped in ``<START>``/``<END>``; the split
    is the name's prefix, e.g. ``train_000016``). Records: ``change_caption`` (answer = all five
    references) and a ``change_qa`` ``change_presence`` record from ``changeflag`` (or, in the
    token form, from whether any caption differs from the no-change sentence). Checked against
    ``rs-samples/change_captioning`` (LEVIR-MCI tokens) and the published JSON schema.
    """

    info = RecipeInfo(
        name="levir_cc",
        title="LEVIR-CC",
        tasks=("change_caption", "change_qa"),
        licence="academic use (LEVIR-CC terms)",
        citation=_LEVIR_CC_CITATION,
        layout="LevirCCcaptions.json + images/<split>/{A,B}/<name>.png, or A/ B/ tokens/<name>.txt (LEVIR-MCI)",
        splits=("train", "val", "test"),
        checked_against="real files: rs-samples/change_captioning (tokens form); published JSON schema",
        url="https://github.com/Chen-Yang-Liu/RSICC",
    )

    json_name = "LevirCCcaptions.json"
    split_in_id = False

    def _pair_paths(self, im: CaptionedImage) -> tuple[str, str]:
        folder = f"images/{im.filepath if im.filepath is not None else im.split}"
        return f"{folder}/A/{im.filename}", f"{folder}/B/{im.filename}"

    def _form(self, src: Path) -> str:
        if (src / self.json_name).is_file():
            return "json"
        if (src / "tokens").is_dir() and (src / "A").is_dir():
            return "tokens"
        return "none"

    def check(self, src: Path) -> None:
        super().check(src)
        if self._form(src) == "none":
            raise DatasetNotFoundError(
                f"{src} has neither LevirCCcaptions.json nor A/ B/ tokens/; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return src.is_dir() and self._form(src) != "none"

    def _token_items(self, src: Path) -> list[dict[str, Any]]:
        items = []
        for path in sorted((src / "tokens").glob("*.txt")):
            split = path.stem.split("_")[0] if "_" in path.stem else "all"
            image = next(
                (f"{path.stem}{e}" for e in IMAGE_EXTS if (src / "A" / f"{path.stem}{e}").exists()),
                f"{path.stem}.png",
            )
            items.append(
                {
                    "id": path.stem,
                    "split": split,
                    "form": "tokens",
                    "before": f"A/{image}",
                    "after": f"B/{image}",
                    "captions_file": f"tokens/{path.name}",
                }
            )
        return items

    def available_splits(self, src: Path) -> list[str]:
        if self._form(src) == "json":
            images = read_caption_images(src / self.json_name, f"{self.info.title} captions JSON")
            splits = {im.split for im in images if isinstance(im, CaptionedImage)}
            return sorted(splits, key=_split_order)
        return sorted({i["split"] for i in self._token_items(src)}, key=_split_order)

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any] | Reject]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        if self._form(src) == "tokens":
            yield from (i for i in self._token_items(src) if i["split"] in wanted)
            return
        images = read_caption_images(src / self.json_name, f"{self.info.title} captions JSON")
        for im in images:
            if isinstance(im, Malformed):
                yield Reject(f"{self.info.name}:{im.key}", im.reason, im.detail)
                continue
            if im.split not in wanted:
                continue
            before, after = self._pair_paths(im)
            stem = Path(im.filename).stem
            yield {
                "id": f"{im.split}/{stem}" if self.split_in_id else stem,
                "split": im.split,
                "form": "json",
                "before": before,
                "after": after,
                "captions": im.captions,
                "changeflag": im.changeflag,
            }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        source = self.info.name
        rid = f"{source}:{item['id']}"
        for rel_path in (item["before"], item["after"]):
            problem = ctx.reject_for(rid, rel_path)
            if problem:
                return [problem]
        if item["form"] == "tokens":
            captions_in = read_change_tokens(ctx.src / item["captions_file"])
        else:
            captions_in = item["captions"]
        outcomes: list[Outcome] = []
        captions = []
        for n, caption in enumerate(captions_in):
            cleaned = clean_caption(caption)
            if cleaned:
                captions.append(cleaned)
            else:
                outcomes.append(Dropped(rid, "empty caption", f"caption {n} is empty"))
        if not captions:
            return [*outcomes, Reject(rid, "empty caption", "no usable caption")]
        flag = item.get("changeflag")
        if flag is None:
            flag = int(any(not _is_no_change(c) for c in captions))
        width, height = ctx.image_size(item["before"])  # type: ignore[misc]
        common = {
            "source": source,
            "split": item["split"],
            "images": [item["before"], item["after"]],
            "meta": {"width": width, "height": height, "changeflag": int(flag)},
        }
        outcomes += [
            make_record(
                oid=f"{item['id']}:caption", task="change_caption", answer=captions, **common
            ),
            make_record(
                oid=f"{item['id']}:change_presence",
                task="change_qa",
                argument="Has anything changed between the two images?",
                answer="yes" if int(flag) else "no",
                qtype="change_presence",
                **common,
            ),
        ]
        return outcomes


@register
class SECONDCC(LEVIRCC):
    """SECOND-CC: 6,041 SECOND-derived pairs (256²) with five change captions each and semantic maps.

    Layout (ChangeCapsInRS/SecondCC release): ``SECOND-CC-AUG.json`` (Karpathy-style ``images`` with
    ``filename``, ``split``, ``sentences[].raw`` and ``changeflag``) and
    ``<split>/rgb/{A,B}/<filename>`` (semantic maps in ``<split>/sem/{A,B}/``, recorded in
    ``meta``). Records as ``levir_cc``; ids carry the split because file names repeat across
    splits. Checked against the directory layout documented by users of the release; tested
    on fake files.
    """

    info = RecipeInfo(
        name="second_cc",
        title="SECOND-CC",
        tasks=("change_caption", "change_qa"),
        licence="academic use (SECOND imagery); see the SECOND-CC release",
        citation="A. Karaca, M. Ozelbas, S. Berber et al. Robust Change Captioning in Remote Sensing: SECOND-CC Dataset and MModalCC Framework. IEEE JSTARS, 2025.",
        layout="SECOND-CC-AUG.json + <split>/rgb/{A,B}/<name>.png (+ <split>/sem/{A,B}/)",
        splits=("train", "val", "test"),
        checked_against="SECOND-CC release layout (JSON + <split>/rgb, <split>/sem); fake files",
        url="https://github.com/ChangeCapsInRS/SecondCC",
    )
    json_name = "SECOND-CC-AUG.json"
    split_in_id = True

    def _pair_paths(self, im: CaptionedImage) -> tuple[str, str]:
        split = im.filepath if im.filepath is not None else im.split
        return f"{split}/rgb/A/{im.filename}", f"{split}/rgb/B/{im.filename}"

    def detect(self, src: Path) -> bool:
        return (src / self.json_name).is_file()

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        outcomes = list(super().convert(item, ctx))
        sem = [item["before"].replace("/rgb/", "/sem/"), item["after"].replace("/rgb/", "/sem/")]
        for outcome in outcomes:
            if isinstance(outcome, dict) and all((ctx.src / p).is_file() for p in sem):
                outcome["meta"]["semantic_maps"] = sem
        return outcomes


_NO_CHANGE = re.compile(
    r"^(the )?(two )?(scenes?|images?)( are| is| seem| look)? (almost |nearly |just )?(the same|identical|unchanged)|^(there is )?no (obvious )?(change|difference)|^nothing (has )?changed",
    re.I,
)


def _is_no_change(caption: str) -> bool:
    return bool(_NO_CHANGE.search(caption.strip()))


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(split, 3), split)
