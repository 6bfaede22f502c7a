"""Image captioning: UCM-Captions, Sydney-Captions, RSICD, RSITMD (Karpathy JSON or the ``*_precomp`` text form), NWPU-Captions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geoassist.readers import CaptionedImage, Malformed, load_json, read_caption_images

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
from ..geometry import label_name
from .change import clean_caption


def _find(src: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        hits = sorted(src.rglob(name)) if src.is_dir() else []
        if hits:
            return hits[0]
    return None


def _precomp(src: Path) -> dict[str, tuple[Path, Path]]:
    """``{split: (captions txt, file-name txt)}`` of the line-aligned ``<split>_caps.txt`` / ``<split>_filename.txt`` form."""
    out = {}
    for caps in sorted(src.rglob("*_caps.txt")) if src.is_dir() else []:
        split = caps.name[: -len("_caps.txt")]
        names = caps.with_name(f"{split}_filename.txt")
        if names.is_file():
            out.setdefault(split, (caps, names))
    return out


class _Captions(Recipe):
    """Karpathy-style ``dataset_*.json`` (``images[].filename/split/sentences[].raw``) or the precomp text form."""

    json_names: tuple[str, ...] = ()
    image_dirs: tuple[str, ...] = ("images", "imgs")

    def _json(self, src: Path) -> Path | None:
        return _find(src, self.json_names)

    def check(self, src: Path) -> None:
        super().check(src)
        if self._json(src) is None and not _precomp(src):
            raise DatasetNotFoundError(
                f"no {' / '.join(self.json_names)} and no <split>_caps.txt + <split>_filename.txt under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return self._json(src) is not None

    def available_splits(self, src: Path) -> list[str]:
        path = self._json(src)
        if path is not None:
            return sorted(
                {im.split for im in self._images(path) if isinstance(im, CaptionedImage)},
                key=_order,
            )
        return sorted(_precomp(src), key=_order)

    def _images(self, path: Path) -> list[CaptionedImage | Malformed]:
        return read_caption_images(path)

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any] | Reject]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        path = self._json(src)
        if path is not None:
            for image in self._images(path):
                if isinstance(image, Malformed):
                    yield Reject(f"{self.info.name}:{image.key}", image.reason, image.detail)
                elif image.split in wanted:
                    yield {
                        "id": Path(image.filename).stem,
                        "split": image.split,
                        "filename": image.filename,
                        "folder": image.filepath,
                        "captions": image.captions,
                        "extra": image.extra,
                    }
            return
        for split, (caps, names) in _precomp(src).items():
            if split not in wanted:
                continue
            captions = caps.read_text(encoding="utf-8").splitlines()
            files = names.read_text(encoding="utf-8").splitlines()
            grouped: dict[str, list[str]] = {}
            for n, name in enumerate(files):
                grouped.setdefault(name.strip(), []).append(
                    captions[n] if n < len(captions) else ""
                )
            for name, texts in grouped.items():
                yield {
                    "id": Path(name).stem,
                    "split": split,
                    "filename": name,
                    "folder": None,
                    "captions": texts,
                    "extra": {},
                }

    def _image(self, ctx: Context, item: dict[str, Any]) -> str | None:
        folders = [ctx.options.get("image_dir"), *self.image_dirs, item.get("folder"), ""]
        for folder in [f for f in folders if f is not None]:
            rel = f"{folder}/{item['filename']}" if folder else item["filename"]
            if (ctx.src / rel).is_file():
                return rel
        hits = sorted(ctx.src.rglob(item["filename"]))
        return hits[0].relative_to(ctx.src).as_posix() if hits else None

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        image = self._image(ctx, item)
        if image is None:
            return [Reject(rid, "missing image", item["filename"])]
        problem = ctx.reject_for(rid, image)
        if problem:
            return [problem]
        outcomes: list[Outcome] = []
        captions = []
        for n, caption in enumerate(item["captions"]):
            cleaned = clean_caption(caption or "")
            if cleaned:
                captions.append(cleaned)
            else:
                outcomes.append(Dropped(rid, "empty caption", f"caption {n}"))
        if not captions:
            return [*outcomes, Reject(rid, "empty caption", "no usable caption")]
        width, height = ctx.image_size(image)  # type: ignore[misc]
        meta = {"width": width, "height": height, "filename": item["filename"], **item["extra"]}
        outcomes.append(
            make_record(
                source=self.info.name,
                oid=item["id"],
                split=item["split"],
                task="caption",
                images=[image],
                answer=captions,
                meta=meta,
            )
        )
        return outcomes


def _order(split: str) -> tuple[int, str]:
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), split)


@register
class UCMCaptions(_Captions):
    """UCM-Captions: the 2,100 UC Merced images with five sentences each.

    Layout (Qu et al. release): ``dataset.json`` (Karpathy-style ``images`` with ``filename``,
    ``split``, ``sentences[].raw``) and ``imgs/<n>.tif``. The precomp text form
    (``<split>_caps.txt`` + ``<split>_filename.txt``) is read too. Answers keep all references.
    Checked against the Karpathy schema GeoSynth's exporter writes and captioning loaders of
    this set; tested on fake files.
    """

    info = RecipeInfo(
        name="ucm_captions",
        title="UCM-Captions",
        tasks=("caption",),
        licence="academic use (UC Merced Land Use images; captions by Qu et al.)",
        citation="B. Qu, X. Li, D. Tao, X. Lu. Deep semantic understanding of high resolution remote sensing image. CITS 2016.",
        layout="dataset.json (Karpathy) + imgs/<n>.tif",
        splits=("train", "val", "test"),
        checked_against="Karpathy caption JSON schema; fake files",
    )
    json_names = ("dataset.json", "dataset_ucm.json", "dataset_UCM.json")
    image_dirs = ("imgs", "images")

    def detect(self, src: Path) -> bool:
        path = self._json(src)
        return (
            path is not None and path.name != "dataset.json"
        )  # a bare dataset.json may be Sydney's: name the recipe


@register
class SydneyCaptions(_Captions):
    """Sydney-Captions: 613 aerial images of Sydney with five sentences each.

    Layout (Qu et al. release): ``dataset.json`` (Karpathy-style) and ``imgs/<n>.tif``; the
    precomp text form is read too. Tested on fake files (same schema as UCM-Captions).
    """

    info = RecipeInfo(
        name="sydney_captions",
        title="Sydney-Captions",
        tasks=("caption",),
        licence="academic use",
        citation="B. Qu, X. Li, D. Tao, X. Lu. Deep semantic understanding of high resolution remote sensing image. CITS 2016.",
        layout="dataset.json (Karpathy) + imgs/<n>.tif",
        splits=("train", "val", "test"),
        checked_against="Karpathy caption JSON schema; fake files",
    )
    json_names = ("dataset.json", "dataset_sydney.json")
    image_dirs = ("imgs", "images")

    def detect(self, src: Path) -> bool:
        return False  # same files as UCM-Captions; name the recipe


@register
class RSICD(_Captions):
    """RSICD: 10,921 images (224², several sources) with five sentences each.

    Layouts: ``dataset_rsicd.json`` (Karpathy-style) + ``RSICD_images/``; or the precomp text form
    used by retrieval code (``<split>_caps.txt`` with one caption a line, ``<split>_filename.txt``
    with the image of each line; images in ``images/`` or ``RSICD_images/``). Checked against
    the real test text in ``rs-samples/captions/rsicd_test_text`` (1,093 images × 5 lines).
    """

    info = RecipeInfo(
        name="rsicd",
        title="RSICD",
        tasks=("caption",),
        licence="academic use",
        citation="X. Lu, B. Wang, X. Zheng, X. Li. Exploring Models and Data for Remote Sensing Image Caption Generation. IEEE TGRS 56(4), 2018.",
        layout="dataset_rsicd.json + RSICD_images/, or <split>_caps.txt + <split>_filename.txt (+ images/)",
        splits=("train", "val", "test"),
        checked_against="real files: rs-samples/captions/rsicd_test_text (precomp form)",
        url="https://github.com/201528014227051/RSICD_optimal",
    )
    json_names = ("dataset_rsicd.json",)
    image_dirs = ("RSICD_images", "images")


@register
class RSITMD(_Captions):
    """RSITMD: 4,743 images with five fine-grained sentences and keywords each.

    Layout (xiaoyuan1996/AMFMN): ``dataset_RSITMD.json`` (Karpathy-style, with ``keywords``) and
    ``images/``; or the precomp text form (``rsitmd_precomp/<split>_caps.txt`` +
    ``<split>_filename.txt``). Keywords are kept in ``meta``. Tested on fake files.
    """

    info = RecipeInfo(
        name="rsitmd",
        title="RSITMD",
        tasks=("caption",),
        licence="academic use",
        citation="Z. Yuan, W. Zhang, K. Fu et al. Exploring a Fine-Grained Multiscale Method for Cross-Modal Remote Sensing Image Retrieval. IEEE TGRS 60, 2022.",
        layout="dataset_RSITMD.json + images/, or <split>_caps.txt + <split>_filename.txt",
        splits=("train", "test"),
        checked_against="AMFMN repository layout (dataset_RSITMD.json, *_precomp); fake files",
        url="https://github.com/xiaoyuan1996/AMFMN",
    )
    json_names = ("dataset_RSITMD.json", "dataset_rsitmd.json")


@register
class NWPUCaptions(_Captions):
    """NWPU-Captions: the 31,500 NWPU-RESISC45 images with five sentences each.

    Layout (HaiyanHuang98/NWPU-Captions): ``dataset_nwpu.json`` keyed by class, each a list of
    ``{filename, split, raw, raw_1, raw_2, raw_3, raw_4, …}``; images in NWPU-RESISC45's
    ``<class>/<filename>`` (under the root, ``images/`` or ``NWPU-RESISC45/``). Records are
    captions with the class in ``meta``. Checked against loaders that read
    ``dataset_nwpu.json`` by class and split; tested on fake files.
    """

    info = RecipeInfo(
        name="nwpu_captions",
        title="NWPU-Captions",
        tasks=("caption",),
        licence="academic use",
        citation="Q. Cheng, H. Huang, Y. Xu et al. NWPU-Captions Dataset and MLCA-Net for Remote Sensing Image Captioning. IEEE TGRS 60, 2022.",
        layout="dataset_nwpu.json ({class: [{filename, split, raw, raw_1…raw_4}]}) + <class>/<filename>",
        splits=("train", "val", "test"),
        checked_against="dataset_nwpu.json schema as read by published loaders; fake files",
        url="https://github.com/HaiyanHuang98/NWPU-Captions",
    )
    json_names = ("dataset_nwpu.json",)

    def _images(self, path: Path) -> list[CaptionedImage | Malformed]:
        data = load_json(path, "NWPU-Captions JSON")
        if not isinstance(data, dict):
            return [Malformed(path.name, "malformed annotation", "the JSON is not {class: [rows]}")]
        out: list[CaptionedImage | Malformed] = []
        for cls in sorted(data):
            for n, row in enumerate(data[cls] if isinstance(data[cls], list) else [None]):
                if not isinstance(row, dict) or not row.get("filename"):
                    detail = f"row {n} of class {cls!r} has no filename"
                    out.append(Malformed(f"{cls}#{n}", "malformed annotation", detail))
                    continue
                raws = [row[k] for k in ("raw", "raw_1", "raw_2", "raw_3", "raw_4") if k in row]
                out.append(
                    CaptionedImage(
                        filename=row["filename"],
                        split=str(row.get("split", "all")),
                        captions=[str(r) for r in raws],
                        extra={"class": cls},
                    )
                )
        return out

    def _image(self, ctx: Context, item: dict[str, Any]) -> str | None:
        cls = item["extra"].get("class", "")
        for folder in (ctx.options.get("image_dir"), "", "images", "NWPU-RESISC45"):
            if folder is None:
                continue
            rel = "/".join(p for p in (folder, cls, item["filename"]) if p)
            if (ctx.src / rel).is_file():
                return rel
        return None

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        outcomes = list(super().convert(item, ctx))
        for outcome in outcomes:
            if isinstance(outcome, dict):
                outcome["meta"]["scene_class"] = label_name(item["extra"].get("class", ""))
        return outcomes
