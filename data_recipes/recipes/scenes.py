"""Scene classification: folder-per-class sets (UCM, AID, NWPU-RESISC45, WHU-RS19, RSSCN7), EuroSAT RGB/MS,
FireRisk, So2Sat LCZ42 (HDF5) and BigEarthNet / reBEN (multi-label).

Each image gives a ``scene_cls`` record (the class in words; ``targets.labels`` keeps the
source's class names; the prompt lists the source's classes, see ``MAX_LISTED_CLASSES``) and a yes/no ``vqa`` pair (``qtype`` ``presence``) asking about its class
and about one class it is not, so the model also learns to say no.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.readers import EUROSAT_SUBDIR

from ..core import (
    Context,
    DatasetNotFoundError,
    MissingDependencyError,
    Outcome,
    Recipe,
    RecipeError,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
    stable_pick,
)
from ..geometry import article, label_name

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_LISTED_CLASSES = 48
"""A ``scene_cls`` prompt lists the source's classes (``[classify] … One of: a, b, c.``) when it
has at most this many, so one model answers each source in that source's own class names (the
unlisted prompt is answered in GeoSynth's classes); larger label sets are not listed."""


def scene_records(
    *,
    source: str,
    oid: str,
    split: str,
    image: str,
    classes: Sequence[str],
    all_classes: Sequence[str],
    meta: dict[str, Any],
    words: dict[str, str] | None = None,
) -> list[Outcome]:
    """``scene_cls`` (one or several classes) plus a yes/no pair about a present and an absent class."""
    words = words or {}

    def word(c: str) -> str:
        return words.get(c) or label_name(c)

    answer = ", ".join(word(c) for c in classes)
    listed = ", ".join(word(c) for c in all_classes) if len(all_classes) <= MAX_LISTED_CLASSES else ""
    common = {"source": source, "split": split, "images": [image], "meta": meta}
    records: list[Outcome] = [
        make_record(
            oid=f"{oid}:scene",
            task="scene_cls",
            argument=listed,
            answer=answer,
            targets={"labels": list(classes)},
            **common,
        )
    ]
    present = stable_pick(f"{source}:{oid}:yes", list(classes), 1)
    absent = stable_pick(f"{source}:{oid}:no", [c for c in all_classes if c not in classes], 1)
    for cls, reply in [*((c, "yes") for c in present), *((c, "no") for c in absent)]:
        records.append(
            make_record(
                oid=f"{oid}:is:{cls}",
                task="vqa",
                argument=f"Does this image show {article(word(cls))}?"
                if len(classes) == 1
                else f"Is there {word(cls)} in this image?",
                answer=reply,
                qtype="presence",
                targets={"labels": list(classes)},
                **common,
            )
        )
    return records


def _split_lists(src: Path) -> dict[str, set[str]]:
    """Split files next to a dataset: ``<anything>-<split>.txt`` listing file names (torchgeo's convention)."""
    out: dict[str, set[str]] = {}
    for path in sorted(src.glob("*-*.txt")):
        split = path.stem.rsplit("-", 1)[1]
        if split in ("train", "val", "test"):
            out[split] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    return out


class _FolderClasses(Recipe):
    """``<class>/<image>`` folders under the root (or under ``image_root``), split ``all`` or from split lists."""

    image_root: tuple[str, ...] = ("",)
    exts: tuple[str, ...] = IMAGE_EXTS

    def _base(self, src: Path) -> Path | None:
        for sub in self.image_root:
            base = src / sub if sub else src
            if base.is_dir() and any(
                d.is_dir() and any(p.suffix.lower() in self.exts for p in d.iterdir())
                for d in base.iterdir()
            ):
                return base
        return None

    def check(self, src: Path) -> None:
        super().check(src)
        if self._base(src) is None:
            raise DatasetNotFoundError(
                f"no <class>/<image> folders in {src}; expected {self.info.layout}"
            )

    def available_splits(self, src: Path) -> list[str]:
        lists = _split_lists(src)
        return [s for s in ("train", "val", "test") if s in lists] or ["all"]

    def _classes(self, base: Path) -> list[str]:
        return sorted(
            d.name
            for d in base.iterdir()
            if d.is_dir() and any(p.suffix.lower() in self.exts for p in d.iterdir())
        )

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        base = self._base(src)
        assert base is not None
        lists = _split_lists(src)
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        classes = self._classes(base)
        for cls in classes:
            for path in sorted(p for p in (base / cls).iterdir() if p.suffix.lower() in self.exts):
                split = "all"
                if lists:
                    split = next(
                        (
                            s
                            for s, names in lists.items()
                            if path.name in names or path.with_suffix(".jpg").name in names
                        ),
                        None,
                    )  # type: ignore[assignment]
                    if split is None:
                        continue  # not in any list: not part of the published splits
                if split in wanted:
                    yield {
                        "id": f"{cls}/{path.stem}",
                        "split": split,
                        "image": path.relative_to(src).as_posix(),
                        "classes": [cls],
                        "all": classes,
                    }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        width, height = ctx.image_size(item["image"])  # type: ignore[misc]
        meta = {"width": width, "height": height, **self._meta(ctx, item)}
        return scene_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            classes=item["classes"],
            all_classes=item["all"],
            meta=meta,
            words=self.words,
        )

    words: dict[str, str] = {}

    def _meta(self, ctx: Context, item: dict[str, Any]) -> dict[str, Any]:
        return {}


_FOLDER_NOTE = "Tested on fake files in the folder-per-class layout."


@register
class UCMerced(_FolderClasses):
    """UC Merced Land Use: 2,100 aerial images (256², 0.3 m), 21 classes, 100 each.

    Layout (release ``UCMerced_LandUse.zip``): ``Images/<class>/<class>NN.tif`` (or the class
    folders at the root). No official split (split ``all``), unless ``*-{train,val,test}.txt``
    lists are beside it (torchgeo's convention). Checked against torchgeo's UCMerced layout.
    """

    info = RecipeInfo(
        name="ucm",
        title="UC Merced Land Use",
        tasks=("scene_cls", "vqa"),
        licence="public domain imagery (USGS); dataset for research",
        citation="Y. Yang, S. Newsam. Bag-of-visual-words and spatial extensions for land-use classification. ACM SIGSPATIAL 2010.",
        layout="Images/<class>/<class>NN.tif (or <class>/ at the root) [+ uc_merced-{train,val,test}.txt]",
        splits=("all",),
        checked_against="torchgeo UCMerced layout; fake files",
        url="http://weegee.vision.ucmerced.edu/datasets/landuse.html",
    )
    image_root = ("Images", "UCMerced_LandUse/Images", "")


@register
class AID(_FolderClasses):
    """AID: 10,000 Google Earth images (600², 0.5–8 m), 30 classes.

    Layout (release): ``<Class>/<class>_N.jpg`` under the root (or ``AID/``). No official split.
    """

    info = RecipeInfo(
        name="aid",
        title="AID",
        tasks=("scene_cls", "vqa"),
        licence="academic use",
        citation="G.-S. Xia, J. Hu, F. Hu et al. AID: A Benchmark Data Set for Performance Evaluation of Aerial Scene Classification. IEEE TGRS 55(7), 2017.",
        layout="<Class>/<class>_N.jpg",
        splits=("all",),
        checked_against="AID release layout; fake files",
        url="https://captain-whu.github.io/AID/",
    )
    image_root = ("", "AID")


@register
class RESISC45(_FolderClasses):
    """NWPU-RESISC45: 31,500 images (256², 0.2–30 m), 45 classes, 700 each.

    Layout (release): ``NWPU-RESISC45/<class>/<class>_NNN.jpg``; torchgeo's split lists
    ``resisc45-{train,val,test}.txt`` are used when present (else split ``all``). Checked
    against torchgeo's RESISC45 dataset layout.
    """

    info = RecipeInfo(
        name="resisc45",
        title="NWPU-RESISC45",
        tasks=("scene_cls", "vqa"),
        licence="academic use",
        citation="G. Cheng, J. Han, X. Lu. Remote Sensing Image Scene Classification: Benchmark and State of the Art. Proc. IEEE 105(10), 2017.",
        layout="NWPU-RESISC45/<class>/<class>_NNN.jpg [+ resisc45-{train,val,test}.txt]",
        splits=("train", "val", "test"),
        checked_against="torchgeo RESISC45 layout and split files; fake files",
    )
    image_root = ("NWPU-RESISC45", "")


@register
class WHURS19(_FolderClasses):
    """WHU-RS19: 1,005 Google Earth images (600²), 19 classes.

    Layout (release): ``<Class>/<class>_NN.jpg`` (or under ``WHU-RS19/``). No official split.
    """

    info = RecipeInfo(
        name="whu_rs19",
        title="WHU-RS19",
        tasks=("scene_cls", "vqa"),
        licence="academic use",
        citation="G.-S. Xia, W. Yang, J. Delon et al. Structural high-resolution satellite image indexing. ISPRS TC VII Symposium, 2010.",
        layout="<Class>/<class>_NN.jpg",
        splits=("all",),
        checked_against="WHU-RS19 release layout; fake files",
    )
    image_root = ("", "WHU-RS19", "RSDataset")


RSSCN7_WORDS = {
    "aGrass": "grass",
    "bField": "field",
    "cIndustry": "industry",
    "dRiverLake": "river or lake",
    "eForest": "forest",
    "fResident": "residential",
    "gParking": "parking",
}


@register
class RSSCN7(_FolderClasses):
    """RSSCN7: 2,800 Google Earth images (400²), 7 classes, 400 each.

    Layout (release): ``<letter><Class>/<letter>NNN.jpg`` (``aGrass/a001.jpg`` … ``gParking/``),
    at the root or under ``RSSCN7/``. No official split; in GeoAssist's committed real-data
    split RSSCN7 is evaluation-only (every image ``test``), a check of transfer to a source the
    model never trained on. The class folders' letter prefixes are dropped in the answers.
    """

    info = RecipeInfo(
        name="rsscn7",
        title="RSSCN7",
        tasks=("scene_cls", "vqa"),
        licence="none stated; academic use",
        citation="Q. Zou, L. Ni, T. Zhang, Q. Wang. Deep Learning Based Feature Selection for Remote Sensing Scene Classification. IEEE GRSL 12(11), 2015.",
        layout="<letter><Class>/<letter>NNN.jpg (aGrass/ … gParking/)",
        splits=("all",),
        checked_against="the published folder layout (a 700-image sample)",
    )
    image_root = ("", "RSSCN7")
    words = RSSCN7_WORDS


EUROSAT_WORDS = {
    "AnnualCrop": "annual crop",
    "Forest": "forest",
    "HerbaceousVegetation": "herbaceous vegetation",
    "Highway": "highway",
    "Industrial": "industrial buildings",
    "Pasture": "pasture",
    "PermanentCrop": "permanent crop",
    "Residential": "residential buildings",
    "River": "river",
    "SeaLake": "sea or lake",
}
SENTINEL2_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B08A",
    "B09",
    "B10",
    "B11",
    "B12",
)


@register
class EuroSATRGB(_FolderClasses):
    """EuroSAT (RGB): 27,000 Sentinel-2 patches (64², 10 m) in 10 land-use classes.

    Layout (release ``EuroSAT.zip``): ``2750/<Class>/<Class>_N.jpg`` (or the class folders at the
    root); torchgeo's ``eurosat-{train,val,test}.txt`` lists are used when present. Checked
    against torchgeo's EuroSAT layout.
    """

    info = RecipeInfo(
        name="eurosat_rgb",
        title="EuroSAT (RGB)",
        tasks=("scene_cls", "vqa"),
        licence="MIT (EuroSAT); Copernicus Sentinel data",
        citation="P. Helber, B. Bischke, A. Dengel, D. Borth. EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover Classification. IEEE JSTARS 12(7), 2019.",
        layout="2750/<Class>/<Class>_N.jpg [+ eurosat-{train,val,test}.txt]",
        splits=("train", "val", "test"),
        checked_against="torchgeo EuroSAT layout; fake files",
        url="https://github.com/phelber/EuroSAT",
    )
    image_root = ("2750", "EuroSAT", "")
    exts = (".jpg", ".jpeg", ".png")
    words = EUROSAT_WORDS


@register
class EuroSATMS(_FolderClasses):
    """EuroSAT (MS): the same patches as 13-band Sentinel-2 GeoTIFFs (uint16, UTM).

    Layouts: torchgeo's ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_N.tif``
    with ``eurosat-{train,val,test}.txt`` (file names listed with ``.tif`` or ``.jpg``), or the
    release's ``EuroSAT_MS/<Class>/*.tif``. Records point at the 13-band file; ``meta`` carries
    the band names (B01…B12, B08A), the CRS and the GSD. Checked against the format-only files
    in ``rs-samples/format_only_synthetic/eurosat_ms`` (torchgeo's test data).
    """

    info = RecipeInfo(
        name="eurosat_ms",
        title="EuroSAT (multispectral)",
        tasks=("scene_cls", "vqa"),
        licence="MIT (EuroSAT); Copernicus Sentinel data",
        citation=EuroSATRGB.info.citation,
        layout="ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_N.tif (+ eurosat-<split>.txt), or EuroSAT_MS/<Class>/",
        splits=("train", "val", "test"),
        checked_against="real format: rs-samples/format_only_synthetic/eurosat_ms (13-band GeoTIFF layout)",
        url="https://github.com/phelber/EuroSAT",
    )
    image_root = (
        EUROSAT_SUBDIR.as_posix(),
        "EuroSAT_MS",
        "EuroSATallBands",
        "",
    )
    exts = (".tif", ".tiff")
    words = EUROSAT_WORDS

    def _meta(self, ctx: Context, item: dict[str, Any]) -> dict[str, Any]:
        from geoassist.io import read_header

        info = read_header(ctx.src / item["image"])
        names = list(SENTINEL2_BANDS) if info.count == 13 else list(info.band_names)
        return {
            "band_names": names,
            "crs": info.crs.to_string() if info.crs else None,
            "gsd_m": abs(info.transform.a) if info.transform else None,
            "sensor": "Sentinel-2 MSI",
        }


FIRERISK_WORDS = {
    "Very_High": "very high fire risk",
    "High": "high fire risk",
    "Moderate": "moderate fire risk",
    "Low": "low fire risk",
    "Very_Low": "very low fire risk",
    "Non-burnable": "non-burnable land",
    "Water": "water",
}


@register
class FireRisk(Recipe):
    """FireRisk: 91,872 NAIP patches (270², 1 m) labelled with one of 7 wildfire-risk classes.

    Layout (release): ``{train,val}/<Class>/<name>.png`` (classes ``Very_High``, ``High``,
    ``Moderate``, ``Low``, ``Very_Low``, ``Non-burnable``, ``Water``). Checked against torchgeo's
    FireRisk layout; tested on fake files.
    """

    info = RecipeInfo(
        name="firerisk",
        title="FireRisk",
        tasks=("scene_cls", "vqa"),
        licence="CC BY-NC 4.0",
        citation="S. Shen, S. Seneviratne, X. Wanyan, M. Kirley. FireRisk: A Remote Sensing Dataset for Fire Risk Assessment with Benchmarks Using Supervised and Self-supervised Learning. 2023.",
        layout="{train,val}/<Class>/<name>.png",
        splits=("train", "val"),
        checked_against="torchgeo FireRisk layout; fake files",
    )

    def _splits(self, src: Path) -> dict[str, Path]:
        return (
            {
                d.name: d
                for d in sorted(src.iterdir())
                if d.is_dir() and any(c.is_dir() for c in d.iterdir())
            }
            if src.is_dir()
            else {}
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._splits(src):
            raise DatasetNotFoundError(
                f"no <split>/<Class>/ folders in {src}; expected {self.info.layout}"
            )

    def available_splits(self, src: Path) -> list[str]:
        return list(self._splits(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        found = self._splits(src)
        for split in split_filter(splits, list(found), self.info.name):
            classes = sorted(d.name for d in found[split].iterdir() if d.is_dir())
            for cls in classes:
                for path in sorted(
                    p for p in (found[split] / cls).iterdir() if p.suffix.lower() in IMAGE_EXTS
                ):
                    yield {
                        "id": f"{split}/{cls}/{path.stem}",
                        "split": split,
                        "image": path.relative_to(src).as_posix(),
                        "classes": [cls],
                        "all": sorted(set(classes) | set(FIRERISK_WORDS)),
                    }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        width, height = ctx.image_size(item["image"])  # type: ignore[misc]
        return scene_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            classes=item["classes"],
            all_classes=item["all"],
            meta={"width": width, "height": height, "gsd_m": 1.0, "sensor": "NAIP"},
            words=FIRERISK_WORDS,
        )


# --------------------------------------------------------------------------- So2Sat LCZ42

LCZ_CLASSES = (
    "compact high-rise",
    "compact mid-rise",
    "compact low-rise",
    "open high-rise",
    "open mid-rise",
    "open low-rise",
    "lightweight low-rise",
    "large low-rise",
    "sparsely built",
    "heavy industry",
    "dense trees",
    "scattered trees",
    "bush, scrub",
    "low plants",
    "bare rock or paved",
    "bare soil or sand",
    "water",
)
SO2SAT_S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08A", "B11", "B12")
_SO2SAT_FILES = {"training.h5": "train", "validation.h5": "val", "testing.h5": "test"}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "the so2sat recipe reads HDF5 files and needs h5py: pip install h5py"
        ) from None
    return h5py


@register
class So2SatLCZ42(Recipe):
    """So2Sat LCZ42: 400,673 Sentinel-1/2 patch pairs (32², 10 m) labelled with 17 local climate zones.

    Layout (release on mediaTUM): ``training.h5``, ``validation.h5``, ``testing.h5`` with datasets
    ``sen1`` (N×32×32×8), ``sen2`` (N×32×32×10, bands B2–B8, B8A, B11, B12) and ``label``
    (N×17 one-hot). Needs ``h5py`` (``pip install h5py``; a clear error says so otherwise).
    The Sentinel-2 patches are written as 10-band float32 TIFFs into the output folder
    (``images/<split>/<index>.tif``); records are scene classification with the LCZ name.
    Checked against torchgeo's So2Sat reader (dataset names and shapes); tested on fake HDF5
    files when h5py is installed.
    """

    info = RecipeInfo(
        name="so2sat",
        title="So2Sat LCZ42",
        tasks=("scene_cls", "vqa"),
        licence="CC BY 4.0",
        citation="X. X. Zhu, J. Hu, C. Qiu et al. So2Sat LCZ42: A Benchmark Data Set for the Classification of Global Local Climate Zones. IEEE GRSM 8(3), 2020.",
        layout="{training,validation,testing}.h5 (sen1, sen2, label one-hot)",
        splits=("train", "val", "test"),
        checked_against="torchgeo So2Sat reader (HDF5 keys and shapes)",
        writes_files=True,
    )

    def _files(self, src: Path) -> dict[str, Path]:
        return {
            split: src / name for name, split in _SO2SAT_FILES.items() if (src / name).is_file()
        }

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(f"none of {', '.join(_SO2SAT_FILES)} in {src}")
        _h5py()

    def detect(self, src: Path) -> bool:
        return bool(self._files(src))

    def available_splits(self, src: Path) -> list[str]:
        return list(self._files(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        h5py = _h5py()
        files = self._files(src)
        for split in split_filter(splits, list(files), self.info.name):
            with h5py.File(files[split], "r") as f:
                n = int(f["label"].shape[0])
            for index in range(n):
                yield {
                    "id": f"{split}/{index}",
                    "split": split,
                    "file": files[split].name,
                    "index": index,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        h5py = _h5py()
        rid = f"{self.info.name}:{item['id']}"
        if ctx.out is None:
            raise RecipeError("so2sat writes image patches; give it an output folder")
        with h5py.File(ctx.src / item["file"], "r") as f:
            patch = np.asarray(f["sen2"][item["index"]], dtype=np.float32)
            onehot = np.asarray(f["label"][item["index"]])
        if onehot.shape != (len(LCZ_CLASSES),) or onehot.sum() != 1:
            return [
                Reject(
                    rid,
                    "malformed annotation",
                    f"label {onehot.tolist()} is not one-hot over 17 classes",
                )
            ]
        cls = LCZ_CLASSES[int(np.argmax(onehot))]
        rel = f"images/{item['split']}/{item['index']}.tif"
        _write_tiff(ctx.out / rel, patch, list(SO2SAT_S2_BANDS))
        meta = {
            "width": int(patch.shape[1]),
            "height": int(patch.shape[0]),
            "band_names": list(SO2SAT_S2_BANDS),
            "gsd_m": 10.0,
            "sensor": "Sentinel-2",
            "lcz": int(np.argmax(onehot)) + 1,
        }
        return scene_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=rel,
            classes=[cls],
            all_classes=LCZ_CLASSES,
            meta=meta,
        )


def _write_tiff(
    path: Path, array: np.ndarray, band_names: list[str], crs: Any = None, transform: Any = None
) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": array.shape[2],
        "dtype": array.dtype.name,
    }
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(array, 2, 0))
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)


# --------------------------------------------------------------------------- BigEarthNet / reBEN

BEN_10M_BANDS = ("B02", "B03", "B04", "B08")


def _ben_patch_dirs(src: Path) -> list[Path]:
    """Patch folders: those holding ``<patch>_B02.tif`` (BigEarthNet v1 flat, reBEN ``<tile>/<patch>/``)."""
    return sorted({p.parent for p in src.rglob("*_B02.tif")}) if src.is_dir() else []


class _BigEarthNet(Recipe):
    def _stack(self, ctx: Context, folder: Path, patch: str) -> tuple[str, dict[str, Any]]:
        import rasterio

        arrays, crs, transform = [], None, None
        for band in BEN_10M_BANDS:
            with rasterio.open(folder / f"{patch}_{band}.tif") as ds:
                arrays.append(ds.read(1))
                crs, transform = ds.crs, ds.transform
        stack = np.stack(arrays, axis=-1)
        rel = f"images/{patch}.tif"
        assert ctx.out is not None
        _write_tiff(ctx.out / rel, stack, ["blue", "green", "red", "nir"], crs, transform)
        meta = {
            "width": int(stack.shape[1]),
            "height": int(stack.shape[0]),
            "band_names": ["blue", "green", "red", "nir"],
            "source_bands": list(BEN_10M_BANDS),
            "crs": crs.to_string() if crs else None,
            "gsd_m": 10.0,
            "sensor": "Sentinel-2",
        }
        return rel, meta

    def _records(
        self, ctx: Context, item: dict[str, Any], labels: list[str], extra: dict[str, Any]
    ) -> list[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        folder = ctx.src / item["folder"]
        missing = [b for b in BEN_10M_BANDS if not (folder / f"{item['id']}_{b}.tif").is_file()]
        if missing:
            return [Reject(rid, "missing image", f"bands {missing} of {item['folder']}")]
        if not labels:
            return [Reject(rid, "no labels", item["folder"])]
        if ctx.out is None:
            raise RecipeError(
                f"{self.info.name} writes stacked 10 m band images; give it an output folder"
            )
        try:
            rel, meta = self._stack(ctx, folder, item["id"])
        except Exception as exc:
            return [Reject(rid, "unreadable image", f"{type(exc).__name__}: {exc}")]
        return scene_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=rel,
            classes=labels,
            all_classes=self.classes,
            meta={**meta, **extra},
            words={c: c.lower() for c in self.classes},
        )

    classes: tuple[str, ...] = ()


BEN43 = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units", "Road and rail networks and associated land",
    "Port areas", "Airports", "Mineral extraction sites", "Dump sites", "Construction sites", "Green urban areas",
    "Sport and leisure facilities", "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
    "Complex cultivation patterns", "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub", "Beaches, dunes, sands", "Bare rock",
    "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes", "Salines", "Intertidal flats",
    "Water courses", "Water bodies", "Coastal lagoons", "Estuaries", "Sea and ocean",
)  # fmt: skip
BEN19 = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation", "Agro-forestry areas",
    "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation", "Transitional woodland, shrub", "Beaches, dunes, sands",
    "Inland wetlands", "Coastal wetlands", "Inland waters", "Marine waters",
)  # fmt: skip


@register
class BigEarthNet(_BigEarthNet):
    """BigEarthNet v1.0 (S2): 590,326 Sentinel-2 patches (120² at 10 m) with CORINE multi-labels (43 classes).

    Layout (release): one folder per patch, ``<patch>/<patch>_B01.tif`` … ``_B12.tif`` and
    ``<patch>/<patch>_labels_metadata.json`` (``labels``, ``coordinates``, ``projection``,
    ``acquisition_date``); splits from ``train.csv`` / ``val.csv`` / ``test.csv`` (patch names,
    as published with the BigEarthNet models) when present, else ``all``. The four 10 m bands
    (B02, B03, B04, B08) are stacked into one GeoTIFF per patch in the output folder. Records:
    multi-label ``scene_cls`` (answer = the labels, comma-separated; ``targets.labels`` keeps
    them) and a yes/no pair. Checked against torchgeo's BigEarthNet reader; tested on fake files.
    """

    info = RecipeInfo(
        name="bigearthnet",
        title="BigEarthNet v1.0 (Sentinel-2)",
        tasks=("scene_cls", "vqa"),
        licence="CDLA-Permissive-1.0",
        citation="G. Sumbul, M. Charfuelan, B. Demir, V. Markl. BigEarthNet: A Large-Scale Benchmark Archive for Remote Sensing Image Understanding. IGARSS 2019.",
        layout="<patch>/<patch>_B??.tif + <patch>_labels_metadata.json [+ {train,val,test}.csv]",
        splits=("train", "val", "test"),
        checked_against="torchgeo BigEarthNet reader (file names, metadata JSON); fake files",
        writes_files=True,
        url="https://bigearth.net/",
    )
    classes = BEN43

    def check(self, src: Path) -> None:
        super().check(src)
        if not _ben_patch_dirs(src):
            raise DatasetNotFoundError(
                f"no <patch>/<patch>_B02.tif folders under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return bool(_ben_patch_dirs(src)) and not (src / "metadata.parquet").is_file()

    def _csv_splits(self, src: Path) -> dict[str, str]:
        out = {}
        for split in ("train", "val", "test"):
            path = src / f"{split}.csv"
            if path.is_file():
                for line in path.read_text().splitlines():
                    name = line.split(",")[0].strip()
                    if name:
                        out[name] = split
        return out

    def available_splits(self, src: Path) -> list[str]:
        splits = self._csv_splits(src)
        return [s for s in ("train", "val", "test") if s in set(splits.values())] or ["all"]

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        by_name = self._csv_splits(src)
        for folder in _ben_patch_dirs(src):
            split = by_name.get(folder.name, "all" if not by_name else None)
            if split is None or split not in wanted:
                continue
            yield {"id": folder.name, "split": split, "folder": folder.relative_to(src).as_posix()}

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        path = ctx.src / item["folder"] / f"{item['id']}_labels_metadata.json"
        if not path.is_file():
            return [Reject(f"{self.info.name}:{item['id']}", "no labels", f"missing {path.name}")]
        metadata = json.loads(path.read_text(encoding="utf-8"))
        labels = list(metadata.get("labels") or [])
        unknown = [lab for lab in labels if lab not in BEN43]
        if unknown:
            return [Reject(f"{self.info.name}:{item['id']}", "unknown class", f"{unknown}")]
        return self._records(
            ctx, item, labels, {"acquisition_date": metadata.get("acquisition_date")}
        )


@register
class ReBEN(_BigEarthNet):
    """reBEN (BigEarthNet v2.0, S2): the refined archive with the 19-class nomenclature and official splits.

    Layout (release): ``metadata.parquet`` (columns ``patch_id``, ``labels`` (list), ``split``,
    ``country``…) and ``BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_B02.tif`` … . The 10 m bands
    are stacked into one GeoTIFF per patch in the output folder; records as ``bigearthnet``.
    Checked against the reBEN metadata schema described by its authors; tested on fake files.
    """

    info = RecipeInfo(
        name="reben",
        title="reBEN (BigEarthNet v2.0, Sentinel-2)",
        tasks=("scene_cls", "vqa"),
        licence="CDLA-Permissive-1.0",
        citation="K. N. Clasen, L. Hackel, T. Burgert et al. reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis. IGARSS 2025.",
        layout="metadata.parquet (patch_id, labels, split) + BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_B??.tif",
        splits=("train", "validation", "test"),
        checked_against="reBEN metadata.parquet schema (patch_id, labels, split); fake files",
        writes_files=True,
        url="https://bigearth.net/",
    )
    classes = BEN19

    def check(self, src: Path) -> None:
        super().check(src)
        if not (src / "metadata.parquet").is_file():
            raise DatasetNotFoundError(f"no metadata.parquet in {src}; expected {self.info.layout}")

    def detect(self, src: Path) -> bool:
        return (src / "metadata.parquet").is_file()

    def _table(self, src: Path) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        return pq.read_table(
            src / "metadata.parquet", columns=["patch_id", "labels", "split"]
        ).to_pylist()

    def available_splits(self, src: Path) -> list[str]:
        return sorted(
            {row["split"] for row in self._table(src)},
            key=lambda s: {"train": 0, "validation": 1, "test": 2}.get(s, 3),
        )

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        folders = {p.name: p for p in _ben_patch_dirs(src)}
        for row in self._table(src):
            if row["split"] not in wanted:
                continue
            folder = folders.get(row["patch_id"])
            yield {
                "id": row["patch_id"],
                "split": row["split"],
                "folder": folder.relative_to(src).as_posix()
                if folder
                else f"BigEarthNet-S2/?/{row['patch_id']}",
                "labels": list(row["labels"] or []),
            }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        unknown = [lab for lab in item["labels"] if lab not in BEN19]
        if unknown:
            return [Reject(f"{self.info.name}:{item['id']}", "unknown class", f"{unknown}")]
        return self._records(ctx, item, item["labels"], {})
