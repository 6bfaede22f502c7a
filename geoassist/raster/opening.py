"""Opening any image source as a :class:`~geoassist.raster.readers.RasterReader`.

:func:`open_raster` picks the reader: Pillow first for 8-bit PNG/JPEG/GIF/BMP/WebP
(it reports truncated files, and converts palette, CMYK and similar modes), rasterio
for everything else and as a fallback; arrays and :class:`Image` objects are served
from memory; a folder of band files becomes a band stack; a GDAL name
(``NETCDF:"f.nc":var``, ``/vsizip/…``) or a URL (``https://``, ``s3://``; read with
HTTP range requests, so a COG is read window by window) is opened by GDAL, with
timeouts and an error that says what to do when the network is not there.

Nothing here changes global state: Pillow's ``MAX_IMAGE_PIXELS`` is only read, and
rasterio's ``NotGeoreferencedWarning`` is silenced for the duration of an open under
a module lock.
"""

from __future__ import annotations

import errno
import io
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, MemoryFile

from geoassist.errors import (
    CorruptImageError,
    ImageError,
    ImageNotFoundError,
    UnsupportedImageError,
)
from geoassist.raster import DEFAULT_MAX_PIXELS
from geoassist.raster.image import Image
from geoassist.raster.readers import (
    ArrayReader,
    PillowReader,
    RasterioReader,
    RasterReader,
    dataset_georef,
    too_large_for_pillow,
)

__all__ = ["open_raster", "is_gdal_name", "is_url"]

_PILLOW_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_RASTER_SIGNATURES = (
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000 (JP2 box)
    b"\xffO\xffQ",  # JPEG 2000 codestream
    b"ENVI",  # an ENVI header
)
_IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".jpe", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".gtif",
    ".jp2", ".j2k", ".j2c", ".jpf", ".jpx", ".hdr", ".img", ".dat", ".bin", ".raw",
    ".bil", ".bsq", ".bip", ".envi", ".vrt",
}  # fmt: skip
_ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bin", ".raw", ".bil", ".bsq", ".bip", ".envi")
_WORLD_FILE_SUFFIXES = (
    ".wld", ".pgw", ".pngw", ".jgw", ".jpgw", ".jpegw", ".gfw", ".gifw", ".bpw", ".bmpw",
)  # fmt: skip
_GDAL_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]+:(?!\\)|/vsi)")
# GDAL settings while a remote raster is open: fail in seconds, not minutes, without a network.
_REMOTE_ENV = {
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_MAX_RETRY": "1",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}

# rasterio warns on every open of an image without a geotransform; the warning
# filter is process-wide, so changes to it are serialised.
_WARNINGS_LOCK = threading.Lock()


def is_url(text: str) -> bool:
    """``https://…``, ``s3://…`` and other URLs GDAL reads remotely."""
    return "://" in text


def is_gdal_name(text: str) -> bool:
    """A URL, a GDAL subdataset (``NETCDF:"f.nc":var``) or a ``/vsi…`` path."""
    return is_url(text) or bool(_GDAL_NAME.match(text))


def open_raster(
    source: Any,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_palette: bool = False,
    folders: bool = True,
    remote: bool = True,
) -> RasterReader:
    """A :class:`RasterReader` for ``source``; use it as a context manager (closing closes files).

    ``source`` is a path (an image file, or a folder of band files when ``folders``),
    a GDAL name or URL (when ``remote``), raw bytes, a binary file object, a
    ``PIL.Image.Image``, a numpy array or an :class:`Image`. ``max_pixels`` is the
    reader's pixel limit (``None``: no cap; see :mod:`geoassist.raster.readers`);
    ``keep_palette`` keeps palette indices instead of expanding them to RGB(A).
    Only the header is read here.
    """
    if isinstance(source, (np.ndarray, Image)):
        return ArrayReader(source, "<array>", max_pixels)
    if isinstance(source, PIL.Image.Image):
        name = getattr(source, "filename", None) or "<PIL image>"
        return PillowReader(source, str(name), keep_palette, max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        text = os.fsdecode(text) if isinstance(text, bytes) else text
        if is_gdal_name(text) and not Path(text).exists():
            if is_url(text) and not remote:
                raise UnsupportedImageError(
                    f"{text} is a URL; download the file and pass its local path"
                )
            return _open_gdal_name(text, max_pixels, keep_palette)
        path = existing_path(text, folders=folders)
        if path.is_dir():
            from geoassist.raster.bandstack import open_band_stack

            return open_band_stack(path, max_pixels=max_pixels)
        with path.open("rb") as f:
            head = f.read(32)
        return _open_file_like(
            str(path), head, lambda: PIL.Image.open(path), lambda: rasterio.open(path),
            lambda: _sidecar_georef(path), suffix=path.suffix.lower(),
            keep_palette=keep_palette, max_pixels=max_pixels,
        )  # fmt: skip
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    elif hasattr(source, "read"):
        data = source.read()
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else "<file object>"
        if not isinstance(data, bytes):
            raise UnsupportedImageError(
                f"{name} returned {type(data).__name__}; open the file in binary mode ('rb')"
            )
    else:
        raise UnsupportedImageError(
            f"cannot read an image from {type(source).__name__}; pass a path, bytes, a binary file "
            "object, a PIL.Image.Image or a numpy array"
        )
    if not data:
        raise CorruptImageError(f"{name} is empty (0 bytes); pass the image's full contents")
    memfiles: list[MemoryFile] = []

    def open_dataset() -> DatasetReader:
        memfile = MemoryFile(data)
        memfiles.append(memfile)
        return memfile.open()

    reader = _open_file_like(
        name, data[:32], lambda: PIL.Image.open(io.BytesIO(data)), open_dataset,
        lambda: (None, None), suffix="", keep_palette=keep_palette, max_pixels=max_pixels,
    )  # fmt: skip
    reader.resources.callback(lambda: [memfile.close() for memfile in memfiles])
    return reader


def _open_gdal_name(name: str, max_pixels: int | None, keep_palette: bool) -> RasterReader:
    env = rasterio.Env(**_REMOTE_ENV) if is_url(name) else None
    if env is not None:
        env.__enter__()
    errors: list[str] = []
    ds = _open_dataset(lambda: rasterio.open(name), errors)
    if ds is None:
        if env is not None:
            env.__exit__(None, None, None)
        if is_url(name):
            raise ImageError(
                f"cannot read {name} ({errors[0]}); check the address and the network connection, "
                "or download the file and pass its local path"
            )
        raise ImageNotFoundError(
            f"GDAL cannot open {name} ({errors[0]}); check the file and the variable or "
            "subdataset named in it"
        )
    try:
        reader = RasterioReader(ds, name, keep_palette, max_pixels)
    except BaseException:
        ds.close()
        if env is not None:
            env.__exit__(None, None, None)
        raise
    if env is not None:
        reader.remote = True
        reader.resources.callback(env.__exit__, None, None, None)
    reader.resources.callback(ds.close)
    return reader


def _open_file_like(
    name: str,
    head: bytes,
    open_pil: Callable[[], PIL.Image.Image],
    open_dataset: Callable[[], DatasetReader],
    georef: Callable[[], tuple[Affine | None, CRS | None]],
    *,
    suffix: str,
    keep_palette: bool,
    max_pixels: int | None,
) -> RasterReader:
    """Pillow first for 8-bit PNG/JPEG/GIF/BMP/WebP, rasterio for the rest and as a fallback."""

    @contextmanager
    def rasterio_reader() -> Iterator[RasterioReader]:
        errors: list[str] = []
        ds = _open_dataset(open_dataset, errors)
        if ds is None:
            raise CorruptImageError(f"{name} cannot be opened by rasterio ({errors[0]})")
        with ds:
            yield RasterioReader(ds, name, keep_palette, max_pixels)

    def pillow_reader(pil: PIL.Image.Image, fallback: Any) -> PillowReader:
        try:
            reader = PillowReader(pil, name, keep_palette, georef(), fallback, max_pixels)
        except BaseException:
            pil.close()
            raise
        reader.resources.callback(pil.close)
        return reader

    pillow_error: Exception | None = None
    tried_pillow = False
    if _is_pillow_format(head):
        tried_pillow = True
        try:
            return pillow_reader(open_pil(), rasterio_reader)
        except PIL.Image.DecompressionBombError as exc:
            # Bigger than Pillow allows: rasterio reads the header and applies max_pixels.
            pillow_error = exc
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            pillow_error = exc
    gdal_errors: list[str] = []
    ds = _open_dataset(open_dataset, gdal_errors)
    if ds is not None:
        try:
            reader = RasterioReader(ds, name, keep_palette, max_pixels)
        except BaseException:
            ds.close()
            raise
        reader.resources.callback(ds.close)
        return reader
    if not tried_pillow and not head.startswith(_RASTER_SIGNATURES):
        try:
            return pillow_reader(open_pil(), None)
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            pillow_error = exc
    if isinstance(pillow_error, PIL.Image.DecompressionBombError):
        raise too_large_for_pillow(name, pillow_error) from pillow_error
    if _is_pillow_format(head) or head.startswith(_RASTER_SIGNATURES) or suffix in _IMAGE_SUFFIXES:
        hint = (
            " (an ENVI binary needs its .hdr beside it)"
            if suffix in _ENVI_DATA_SUFFIXES[1:]
            else ""
        )
        reason = pillow_error or (gdal_errors[0] if gdal_errors else None)
        raise CorruptImageError(
            f"{name} cannot be decoded as an image{hint}; the file is truncated, damaged or not what "
            "its name says — re-download or re-export it" + (f" ({reason})" if reason else "")
        )
    raise UnsupportedImageError(
        f"{name} is not in a recognised image format; GeoAssist reads PNG, JPEG, GIF, BMP, WebP, "
        "TIFF/GeoTIFF, JPEG 2000, ENVI and other GDAL raster formats"
    )


def _open_dataset(
    open_dataset: Callable[[], DatasetReader], errors: list[str] | None = None
) -> DatasetReader | None:
    """Open with rasterio, or None (the reason appended to ``errors``) when GDAL cannot."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return open_dataset()
        except (RasterioError, OSError) as exc:
            if errors is not None:
                errors.append(str(exc))
            return None


def existing_path(source: str | os.PathLike, *, folders: bool = False) -> Path:
    """``source`` as the path of an existing, non-empty file (or folder, when ``folders``).

    Missing files, dangling or looping symbolic links, unreadable files, folders and
    empty files each get their own message. An ENVI ``.hdr`` becomes its data file.
    """
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if is_url(text):
        raise UnsupportedImageError(f"{text} is a URL; download the file and pass its local path")
    path = Path(text).expanduser()
    try:
        path.stat()
    except OSError as exc:
        raise _path_error(path, exc) from None
    if path.is_dir() and not folders:
        raise UnsupportedImageError(
            f"{path} is a folder; pass the path of one image file inside it"
        )
    if path.is_dir():
        return path
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path} cannot be read (permission denied); check its permissions")
    if path.suffix.lower() == ".hdr":
        # An ENVI header: GDAL opens the binary beside it, which finds the header again.
        for suffix in _ENVI_DATA_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate.is_file():
                path = candidate
                break
        else:
            looked = ", ".join(path.with_suffix(s).name for s in _ENVI_DATA_SUFFIXES)
            raise ImageNotFoundError(
                f"ENVI header {path} has no data file beside it (looked for {looked})"
            )
    if path.stat().st_size == 0:
        raise CorruptImageError(f"{path} is empty (0 bytes); re-download or re-export it")
    return path


def _path_error(path: Path, exc: OSError) -> ImageError:
    if exc.errno == errno.ELOOP:
        return ImageError(
            f"{path} is a symbolic link that loops back on itself (it points to "
            f"{_link_target(path)}); point the link at the image file, or pass the file's own path"
        )
    if path.is_symlink():
        return ImageNotFoundError(
            f"{path} is a symbolic link to {_link_target(path)}, which does not exist; point the "
            "link at the image file, or pass the file's own path"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ImageError(f"{path} cannot be read (permission denied); check its permissions")
    return ImageNotFoundError(
        f"no such image file: {path}; check the path (relative paths start at {Path.cwd()})"
    )


def _link_target(path: Path) -> str:
    # The first link on the way that loops or dangles.
    probe = path
    for _ in range(40):
        if probe.is_symlink():
            return os.readlink(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    return "?"


def _sidecar_georef(path: Path) -> tuple[Affine | None, CRS | None]:
    """Georeferencing of a PNG/JPEG from a world file or .aux.xml beside it, else (None, None)."""
    sidecars = [path.with_name(path.name + ".aux.xml")] + [
        path.with_suffix(s) for s in _WORLD_FILE_SUFFIXES
    ]
    if not any(p.is_file() for p in sidecars):
        return None, None
    ds = _open_dataset(lambda: rasterio.open(path))
    if ds is None:
        return None, None
    with ds:
        return dataset_georef(ds)


def _is_pillow_format(head: bytes) -> bool:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 26:
        bit_depth, colour_type = head[24], head[25]
        # Pillow reduces 16-bit colour PNGs to 8 bits; rasterio keeps them uint16 (but, unlike
        # Pillow, GDAL does not report truncated PNG data, so 8-bit PNGs stay with Pillow).
        return not (bit_depth == 16 and colour_type in (2, 4, 6))
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return head.startswith(_PILLOW_SIGNATURES)
