"""Uploaded files → images the assistant can read, and the quicklook the app shows of them.

The app only ever opens files that came through its own upload (Gradio's upload
folder) or the shipped examples: :func:`stage_uploads` refuses any other path, so a
path typed or forged by a user is never read. Uploads are linked into one folder per
conversation so that side-car files (a world file and ``.prj`` beside a PNG, an
``.aux.xml``, an ENVI ``.hdr``) lie next to their image, where :mod:`geoassist.io`
looks for them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from geoassist.errors import BandMismatchError, ConfigError, GeoAssistError, ImageError

IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gtif", ".jp2", ".j2k", ".webp", ".bmp", ".gif",
    ".img", ".dat", ".bil", ".bsq", ".bip", ".envi",
)  # fmt: skip
SIDECAR_SUFFIXES = (
    ".pgw", ".pngw", ".jgw", ".jpgw", ".jpegw", ".tfw", ".tifw", ".tiffw", ".wld", ".prj",
    ".aux.xml", ".hdr", ".ovr", ".msk",
)  # fmt: skip
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class InputError(GeoAssistError, ValueError):
    """An upload or a request the app cannot use; the message says what to do instead."""


def user_facing(message: str, names: dict[str, str] | None = None, roots: Sequence = ()) -> str:
    """``message`` with server paths replaced by what the user knows: their file's name.

    ``names`` maps staged paths to the names the user uploaded; any other absolute path
    under one of ``roots`` (the staging and upload folders, the temporary folder) becomes
    its file name.
    """
    for path, name in (names or {}).items():
        message = message.replace(str(path), name)
    for root in [*roots, tempfile.gettempdir()]:
        root = str(root).rstrip("/")
        if root:
            message = re.sub(re.escape(root) + r"/[^\s'\"]*", lambda m: Path(m[0]).name, message)
    return message


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".aux.xml"):
        return ".aux.xml"
    return path.suffix.lower()


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    for root in roots:
        try:
            path.relative_to(root)
            return True
        except ValueError:
            continue
    return False


@dataclass
class Staged:
    """Images of one conversation, in the order given (earliest first for a pair or series)."""

    images: list[Path]
    folder: Path
    names: list[str]

    @property
    def user_names(self) -> dict[str, str]:
        """Each staged image's path and the name the user gave the file."""
        return {str(p): n for p, n in zip(self.images, self.names, strict=False)}

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stage_uploads(
    files: Sequence[str | os.PathLike] | None,
    *,
    allowed_roots: Sequence[str | os.PathLike],
    staging_root: str | os.PathLike,
    max_images: int,
) -> Staged | None:
    """Check uploads and link them into a fresh folder under ``staging_root``.

    Returns ``None`` for no files. Raises :class:`InputError` for a file from outside
    ``allowed_roots``, a file that is neither an image nor a side-car, no image at all, or
    more images than the model takes.
    """
    if not files:
        return None
    roots = [Path(r).resolve() for r in allowed_roots]
    sources: list[Path] = []
    for item in files:
        path = Path(os.fspath(item)).resolve()
        if not _inside(path, roots) or not path.is_file():
            raise InputError(
                f"{Path(os.fspath(item)).name}: files can only come from this page's upload; "
                "upload the image again"
            )
        if _suffix(path) not in IMAGE_SUFFIXES + SIDECAR_SUFFIXES:
            raise InputError(
                f"{path.name} is not an image GeoAssist reads; upload PNG, JPEG, GeoTIFF or "
                "JPEG 2000 files (plus world files or .prj beside them if you have them)"
            )
        sources.append(path)
    images = [p for p in sources if _suffix(p) in IMAGE_SUFFIXES]
    if not images:
        raise InputError("only side-car files were uploaded; add the image they belong to")
    if len(images) > max_images:
        raise InputError(
            f"{len(images)} images uploaded; this model takes at most {max_images} at once "
            "(one image, a before/after pair or a short series). Remove some and upload again"
        )
    folder = Path(tempfile.mkdtemp(prefix="conv-", dir=staging_root))
    staged: list[Path] = []
    used: set[str] = set()
    for path in sources:
        name = _SAFE_NAME.sub("_", path.name).lstrip(".") or "upload"
        if name.lower() in used:  # two uploads with one name: keep both
            name = f"{len(used)}_{name}"
        used.add(name.lower())
        target = folder / name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        if path in images:
            staged.append(target)
    return Staged(images=staged, folder=folder, names=[p.name for p in images])


# ----------------------------------------------------------------------- band choices

AUTO = "auto"
COMPOSITE_NAMES = {
    "true_color": "true colour",
    "false_color": "false colour (NIR, red, green)",
    "swir": "SWIR composite",
    "agriculture": "agriculture composite",
    "urban": "urban composite",
    "ndvi": "NDVI",
    "ndwi": "NDWI",
    "nbr": "burn ratio (NBR)",
    "ndbi": "built-up index (NDBI)",
}


def parse_bands(text: str | None) -> list[str | int] | None:
    """``"4,3,2"`` → ``[4, 3, 2]``; ``"B08 B04 B03"`` → names; blank → ``None``."""
    if text is None or not text.strip():
        return None
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if len(parts) not in (1, 3):
        raise InputError(
            f"bands: give three bands for red, green and blue (e.g. 4,3,2 or B04,B03,B02), "
            f"or one for gray; got {len(parts)}"
        )
    return [int(p) if p.isdigit() else p for p in parts]


@dataclass(frozen=True)
class BandChoice:
    """How a multi-band image becomes RGB, for the quicklook and for the model alike."""

    bands: tuple[str | int, ...] | None = None
    sensor: str | None = None
    composite: str | None = None

    @classmethod
    def from_form(cls, bands: str | None, sensor: str | None, composite: str | None) -> BandChoice:
        parsed = parse_bands(bands)
        return cls(
            bands=tuple(parsed) if parsed else None,
            sensor=None if not sensor or sensor == AUTO else sensor,
            composite=None if not composite or composite == AUTO else composite,
        )

    @property
    def uses_sensor(self) -> bool:
        return self.sensor is not None or self.composite is not None


# Diverging ramps for index composites: the colours at -1, 0 and +1.
INDEX_RAMPS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "ndvi": ((140, 81, 10), (245, 245, 245), (1, 102, 94)),  # bare / – / vegetation
    "ndwi": ((140, 81, 10), (245, 245, 245), (33, 102, 172)),  # dry / – / water
    "nbr": ((178, 24, 43), (245, 245, 245), (27, 120, 55)),  # burnt / – / healthy
    "ndbi": ((27, 120, 55), (245, 245, 245), (118, 42, 131)),  # vegetation / – / built-up
}
INDEX_ENDS = {
    "ndvi": ("bare", "vegetation"),
    "ndwi": ("dry land", "water"),
    "nbr": ("burnt", "healthy"),
    "ndbi": ("vegetation", "built-up"),
}


def index_ramp(values: np.ndarray, name: str) -> np.ndarray:
    """H×W×3 uint8: index values in [-1, 1] on the index's diverging ramp (NaN: black)."""
    low, mid, high = (np.array(c, np.float32) for c in INDEX_RAMPS.get(name, INDEX_RAMPS["ndvi"]))
    v = np.clip(np.nan_to_num(values, nan=0.0), -1, 1)[:, :, None].astype(np.float32)
    rgb = np.where(v < 0, mid + (low - mid) * -v, mid + (high - mid) * v)
    rgb[np.isnan(values)] = 0
    return np.rint(rgb).astype(np.uint8)


def ramp_legend(name: str) -> str:
    """An HTML scale bar for an index composite: the ramp from -1 to +1, with what its ends mean."""
    low, mid, high = (f"rgb{c}" for c in INDEX_RAMPS.get(name, INDEX_RAMPS["ndvi"]))
    left, right = INDEX_ENDS.get(name, ("low", "high"))
    title = COMPOSITE_NAMES.get(name, name.upper())
    return (
        f'<div class="ga-legend"><span class="ga-legend-title">{title}</span>'
        f'<div class="ga-ramp" style="background: linear-gradient(to right, {low}, {mid}, {high})">'
        "</div>"
        f'<div class="ga-ticks"><span>−1 {left}</span><span>0</span><span>+1 {right}</span></div>'
        "</div>"
    )


def compose_rgb(image, choice: BandChoice) -> tuple[np.ndarray, str]:
    """H×W×3 uint8 for display, and a few words on which bands made it.

    Index composites (NDVI…) are shown on a diverging ramp (:func:`index_ramp`); an
    unnamed stack of more than three bands says which of its bands are shown.
    """
    from geoassist.sensors import (
        INDICES,
        default_band_names,
        detect_sensor,
        make_composite,
        select_bands,
        spectral_index,
    )

    try:
        if choice.composite in INDICES:
            values = spectral_index(image, choice.composite, choice.sensor)
            what = COMPOSITE_NAMES.get(choice.composite, choice.composite)
            return index_ramp(values, choice.composite), (
                f"{what}{f' ({choice.sensor})' if choice.sensor else ''}, −1 to +1 on a colour ramp"
            )
        if choice.uses_sensor:
            rgb = make_composite(image, choice.sensor, choice.composite or "true_color")
            key = choice.composite or "true_color"
            what = COMPOSITE_NAMES.get(key, key.replace("_", " "))
            return rgb, f"{what}{f' ({choice.sensor})' if choice.sensor else ''}"
        if choice.bands:
            return image.to_rgb_uint8(list(choice.bands)), "bands " + ", ".join(
                map(str, choice.bands)
            )
        rgb = image.to_rgb_uint8()  # the bands geoassist.sensors.select_bands picks
        names = list(image.band_names)
        if image.count > 3 and names == default_band_names(image.count):
            shown = [i + 1 for i in select_bands(names)]
            return rgb, (
                f"bands {', '.join(map(str, shown))} as red, green, blue (its {image.count} bands "
                "have no names; pick others under Bands)"
            )
        sensor = detect_sensor(image.band_names)
        if sensor is not None and "red" not in {n.lower() for n in image.band_names}:
            return rgb, f"true colour ({sensor.name})"
        return rgb, "true colour" if image.count >= 3 else "gray"
    except (BandMismatchError, ConfigError) as exc:
        raise InputError(
            f"{exc}. Open 'Bands' and pick three bands (e.g. 4,3,2) or a sensor preset"
        ) from None


# ----------------------------------------------------------------------- quicklook


@dataclass
class Quicklook:
    """A display-sized RGB view of one input and what is known about it."""

    rgb: np.ndarray
    scale: float  # display pixels per original pixel
    size: tuple[int, int]  # original (width, height)
    describe: str  # one line for the user
    bands_note: str
    band_names: tuple[str, ...]
    georeferenced: bool
    legend: str = ""  # an HTML scale bar for index composites


def _describe(info, path_name: str) -> str:
    from geoassist.geo import Georef

    names = [n.lower() for n in info.band_names]
    if info.count == 3 and names == ["red", "green", "blue"]:
        bands = "RGB"
    elif info.count == 1:
        bands = "1 band"
    else:
        bands = f"{info.count} bands"
        if info.count > 3:
            shown = list(info.band_names)[:6]
            bands += " (" + ", ".join(shown) + (", …" if info.count > 6 else "") + ")"
    parts = [f"**{path_name}**", f"{info.width}×{info.height} px", bands, str(info.dtype)]
    if info.transform is not None:
        georef = Georef(info.transform, info.crs, info.width, info.height)
        geo = georef.describe()
        parts.append(geo.get("crs") or "no CRS")
        if geo.get("gsd_m"):
            parts.append(f"{geo['gsd_m']:g} m/px")
    else:
        parts.append("not georeferenced")
    return " · ".join(parts)


def make_quicklook(
    path: str | os.PathLike,
    choice: BandChoice | None = None,
    *,
    max_side: int = 1024,
    min_side: int = 768,
) -> Quicklook:
    """Read ``path`` (reduced when larger than ``max_side``) and compose its RGB view.

    Small images are enlarged by a whole factor (pixels stay square and sharp) until their
    longest side reaches ``min_side``, so that outlines and labels drawn over them stay thin
    and legible when the browser shows them at panel size.
    """
    from geoassist.app.overlays import fit_scale
    from geoassist.io import open_raster

    path = Path(path)
    choice = choice or BandChoice()
    try:
        # One windowed reader: the pixel limit holds for the reduced read too, before decoding.
        with open_raster(path, folders=False, remote=False) as reader:
            info = reader.info
            scale = fit_scale(info.size, max_side)
            out_size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
            # GDAL reduces rasters (using their overviews); PNG/JPEG are resized after decoding.
            reduced = scale < 1 and _suffix(path) not in PILLOW_SUFFIXES
            image = reader.read(out_size=out_size if reduced else None)
    except ImageError as exc:
        message = user_facing(str(exc), {str(path): path.name})
        raise InputError(message if path.name in message else f"{path.name}: {message}") from None
    rgb, note = compose_rgb(image, choice)
    if rgb.shape[1] != out_size[0] or rgb.shape[0] != out_size[1]:
        rgb = np.asarray(PIL.Image.fromarray(rgb).resize(out_size, PIL.Image.BILINEAR))
        scale = out_size[0] / info.width
    factor = math.ceil(min_side / max(rgb.shape[:2])) if max(rgb.shape[:2]) < min_side else 1
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
        scale *= factor
    return Quicklook(
        rgb=rgb,
        scale=scale,
        size=info.size,
        describe=_describe(info, path.name),
        bands_note=note,
        band_names=tuple(info.band_names),
        georeferenced=info.transform is not None,
        legend=ramp_legend(choice.composite) if _is_index(choice.composite) else "",
    )


def _is_index(composite: str | None) -> bool:
    from geoassist.sensors import INDICES

    return composite in INDICES
