"""Reading images and rasters: formats, metadata round-trips, guards and errors."""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader

from geoassist import io as gio
from geoassist.errors import (
    BandMismatchError,
    CorruptImageError,
    GeoAssistError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from geoassist.io import Image, ImageInfo, load_image, read_header
from geoassist.raster import opening as raster_opening

UTM_TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_200_000.0)
UTM_CRS = CRS.from_epsg(32633)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write_raster(path: Path, array_hwc: np.ndarray, **profile) -> Path:
    """Write an H×W×C array with rasterio; ``descriptions`` and ``colormap`` are set after."""
    descriptions = profile.pop("descriptions", None)
    colormap = profile.pop("colormap", None)
    profile.setdefault("driver", "GTiff")
    h, w, c = array_hwc.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain test files have no CRS
        ds = rasterio.open(path, "w", width=w, height=h, count=c, dtype=array_hwc.dtype, **profile)
    with ds:
        ds.write(np.moveaxis(array_hwc, -1, 0))
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
        if colormap:
            ds.write_colormap(1, colormap)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG header declaring a huge image, with almost no data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def rgb_array() -> np.ndarray:
    return _rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)


@pytest.fixture
def geotiff_u16(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """4-band uint16 GeoTIFF, descriptions in NIR, B, G, R order, nodata 0, UTM 33N."""
    array = _rng(2).integers(1, 4000, (50, 70, 4), dtype=np.uint16)
    array[:5, :5, :] = 0  # a nodata corner
    path = _write_raster(
        tmp_path / "scene.tif",
        array,
        crs=UTM_CRS,
        transform=UTM_TRANSFORM,
        nodata=0,
        tiled=True,
        blockxsize=16,
        blockysize=16,
        descriptions=["nir", "blue", "green", "red"],
    )
    return path, array


@pytest.fixture
def geotiff_f32_nan(tmp_path: Path) -> tuple[Path, np.ndarray]:
    array = _rng(3).normal(0.2, 0.05, (30, 20, 2)).astype(np.float32)
    array[0, :, :] = np.nan
    path = _write_raster(
        tmp_path / "reflectance.tif", array, crs=UTM_CRS, transform=UTM_TRANSFORM, nodata=np.nan
    )
    return path, array


# --------------------------------------------------------------------------- PNG / JPEG / plain TIFF


def test_png_rgb_round_trip(tmp_path: Path, rgb_array: np.ndarray) -> None:
    path = tmp_path / "rgb.png"
    PIL.Image.fromarray(rgb_array).save(path)
    image = load_image(path)
    np.testing.assert_array_equal(image.array, rgb_array)
    assert image.band_names == ["red", "green", "blue"]
    assert (image.height, image.width, image.count) == (40, 60, 3)
    assert image.size == (60, 40)
    assert image.dtype == np.uint8
    assert image.transform is None and image.crs is None and image.nodata is None
    assert image.source == str(path)
    np.testing.assert_array_equal(image.to_rgb_uint8(), rgb_array)  # uint8 passes through


def test_png_rgba_keeps_alpha_and_masks(tmp_path: Path, rgb_array: np.ndarray) -> None:
    alpha = np.full(rgb_array.shape[:2] + (1,), 255, np.uint8)
    alpha[:10] = 0
    rgba = np.concatenate([rgb_array, alpha], axis=2)
    path = tmp_path / "rgba.png"
    PIL.Image.fromarray(rgba, mode="RGBA").save(path)
    image = load_image(path)
    assert image.band_names == ["red", "green", "blue", "alpha"]
    np.testing.assert_array_equal(image.array, rgba)
    mask = image.valid_mask()
    assert mask.shape == (40, 60) and not mask[:10].any() and mask[10:].all()
    np.testing.assert_array_equal(image.to_rgb_uint8(), rgb_array)


def test_png_gray_and_16bit_gray(tmp_path: Path) -> None:
    gray = _rng(4).integers(0, 256, (20, 30), dtype=np.uint8)
    PIL.Image.fromarray(gray).save(tmp_path / "gray.png")
    image = load_image(tmp_path / "gray.png")
    assert image.array.shape == (20, 30, 1) and image.band_names == ["gray"]
    np.testing.assert_array_equal(image.array[:, :, 0], gray)
    rgb = image.to_rgb_uint8()
    assert rgb.shape == (20, 30, 3) and (rgb[:, :, 0] == rgb[:, :, 2]).all()

    deep = _rng(5).integers(0, 65536, (20, 30), dtype=np.uint16)
    PIL.Image.fromarray(deep).save(tmp_path / "gray16.png")
    image = load_image(tmp_path / "gray16.png")
    assert image.dtype == np.uint16 and image.band_names == ["gray"]
    np.testing.assert_array_equal(image.array[:, :, 0], deep)
    assert image.to_rgb_uint8().dtype == np.uint8


def test_png_16bit_rgb_keeps_precision(tmp_path: Path) -> None:
    deep = _rng(6).integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    path = _write_raster(tmp_path / "rgb16.png", deep, driver="PNG")
    image = load_image(path)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.array, deep)
    assert image.band_names == ["red", "green", "blue"]
    assert image.transform is None


def test_png_palette_converted_or_kept(tmp_path: Path) -> None:
    indices = np.tile(np.arange(4, dtype=np.uint8), (8, 2))
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]
    pil = PIL.Image.fromarray(indices, mode="L").convert("P")
    pil.putpalette(palette + [0] * (768 - len(palette)))
    pil.putdata(indices.ravel())
    pil.save(tmp_path / "palette.png")

    image = load_image(tmp_path / "palette.png")
    assert image.band_names == ["red", "green", "blue"]
    np.testing.assert_array_equal(image.array[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image.array[0, 2], [0, 0, 255])

    kept = load_image(tmp_path / "palette.png", keep_palette=True)
    assert kept.band_names == ["palette_index"]
    np.testing.assert_array_equal(kept.array[:, :, 0], indices)
    assert read_header(tmp_path / "palette.png").count == 3

    pil.info["transparency"] = 3
    pil.save(tmp_path / "palette_t.png", transparency=3)
    image = load_image(tmp_path / "palette_t.png")
    assert image.band_names == ["red", "green", "blue", "alpha"]
    assert not image.valid_mask()[0, 3] and image.valid_mask()[0, 0]


def test_palette_geotiff_expanded(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)[:, :, None]
    colormap = {0: (10, 20, 30, 255), 1: (200, 0, 0, 255), 2: (0, 200, 0, 255)}
    path = _write_raster(
        tmp_path / "classes.tif", indices, photometric="palette", colormap=colormap
    )
    image = load_image(path)
    assert image.band_names == ["red", "green", "blue"]
    np.testing.assert_array_equal(image.array[0, 1], [200, 0, 0])
    assert load_image(path, keep_palette=True).array[1, 0, 0] == 2


def test_jpeg_and_plain_tiff(tmp_path: Path, rgb_array: np.ndarray) -> None:
    smooth = np.repeat(np.linspace(0, 255, 60, dtype=np.uint8)[None, :, None], 40, axis=0)
    smooth = np.repeat(smooth, 3, axis=2)
    PIL.Image.fromarray(smooth).save(tmp_path / "photo.jpg", quality=95)
    image = load_image(tmp_path / "photo.jpg")
    assert image.array.shape == (40, 60, 3) and image.band_names == ["red", "green", "blue"]
    assert np.abs(image.array.astype(int) - smooth).max() <= 8  # lossy, but close
    assert image.transform is None

    PIL.Image.fromarray(rgb_array).save(tmp_path / "plain.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rasterio's NotGeoreferencedWarning must not leak
        image = load_image(tmp_path / "plain.tif")
    np.testing.assert_array_equal(image.array, rgb_array)
    assert image.transform is None and image.crs is None  # not rasterio's identity default


def test_png_with_world_file_is_georeferenced(tmp_path: Path, rgb_array: np.ndarray) -> None:
    PIL.Image.fromarray(rgb_array).save(tmp_path / "tile.png")
    (tmp_path / "tile.pgw").write_text("0.5\n0\n0\n-0.5\n1000.25\n2000.25\n")
    image = load_image(tmp_path / "tile.png")
    assert image.transform == Affine(0.5, 0, 1000.0, 0, -0.5, 2000.5)  # world file: pixel centre
    assert image.pixel_to_map(0, 0) == (1000.0, 2000.5)


# --------------------------------------------------------------------------- GeoTIFF, JP2, ENVI


def test_geotiff_metadata_round_trip(geotiff_u16: tuple[Path, np.ndarray]) -> None:
    path, array = geotiff_u16
    image = load_image(path)
    np.testing.assert_array_equal(image.array, array)
    assert image.dtype == np.uint16
    assert image.band_names == ["nir", "blue", "green", "red"]
    assert image.nodata == 0
    assert image.transform == UTM_TRANSFORM
    assert image.crs == UTM_CRS
    x, y = image.pixel_to_map(2, 3)
    assert (x, y) == (500_020.0, 4_199_970.0)
    xs, ys = image.pixel_to_map(np.array([0.5, 1.5]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(xs, [500_005.0, 500_015.0])
    assert not image.valid_mask()[:5, :5].any() and image.valid_mask()[5:, 5:].all()


def test_read_header_matches_load_without_reading_pixels(
    geotiff_u16: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, array = geotiff_u16
    full = load_image(path)

    def no_read(*args, **kwargs):
        raise AssertionError("read_header decoded pixels")

    monkeypatch.setattr(DatasetReader, "read", no_read)
    info = read_header(path)
    assert isinstance(info, ImageInfo)
    assert (info.width, info.height, info.count, info.dtype) == (70, 50, 4, "uint16")
    assert info.size == full.size
    assert list(info.band_names) == full.band_names
    assert info.nodata == 0 and info.transform == UTM_TRANSFORM and info.crs == UTM_CRS
    assert info.driver == "GTiff" and info.is_georeferenced


def test_to_rgb_picks_named_bands_in_any_order(geotiff_u16: tuple[Path, np.ndarray]) -> None:
    path, array = geotiff_u16
    image = load_image(path)
    rgb = image.to_rgb_uint8()
    assert rgb.shape == (50, 70, 3) and rgb.dtype == np.uint8
    # Channel 0 of the composite is the band described "red" (file band 4).
    by_number = image.to_rgb_uint8(bands=[4, 3, 2])
    by_name = image.to_rgb_uint8(bands=["RED", "green", "blue"])
    np.testing.assert_array_equal(rgb, by_number)
    np.testing.assert_array_equal(rgb, by_name)
    # Nodata pixels stay black and do not take part in the stretch.
    assert (rgb[:5, :5] == 0).all()
    red = array[5:, 5:, 3].astype(float)
    low, high = np.percentile(red, [2, 98])
    expected = np.rint(np.clip((red - low) * 255 / (high - low), 0, 255))
    assert np.abs(rgb[5:, 5:, 0].astype(float) - expected).max() <= 1
    with pytest.raises(BandMismatchError, match="swir"):
        image.to_rgb_uint8(bands=["swir", "red", "green"])


def test_band_selection_at_read_time(geotiff_u16: tuple[Path, np.ndarray]) -> None:
    path, array = geotiff_u16
    image = load_image(path, bands=["red", "green", "blue"])
    assert image.band_names == ["red", "green", "blue"]
    np.testing.assert_array_equal(image.array, array[:, :, [3, 2, 1]])
    image = load_image(path, bands=[1])
    assert image.band_names == ["nir"]
    np.testing.assert_array_equal(image.array[:, :, 0], array[:, :, 0])
    with pytest.raises(BandMismatchError, match="band numbers start at 1"):
        load_image(path, bands=[0])
    with pytest.raises(BandMismatchError, match="nir, blue, green, red"):
        load_image(path, bands=["B04"])


def test_window_equals_slice_of_full_read(
    geotiff_u16: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, array = geotiff_u16
    full = load_image(path)
    part = load_image(path, window=(17, 9, 20, 12))
    np.testing.assert_array_equal(part.array, full.array[9:21, 17:37])
    assert part.transform == Affine(10.0, 0.0, 500_170.0, 0.0, -10.0, 4_199_910.0)
    assert part.pixel_to_map(0, 0) == full.pixel_to_map(17, 9)
    assert part.band_names == full.band_names and part.crs == full.crs

    PIL.Image.fromarray(array[:, :, :3].astype(np.uint8)).save(tmp_path / "w.png")
    full_png = load_image(tmp_path / "w.png")
    part_png = load_image(tmp_path / "w.png", window=(3, 4, 10, 5), bands=["blue"])
    np.testing.assert_array_equal(part_png.array, full_png.array[4:9, 3:13, 2:3])

    with pytest.raises(ImageError, match="clip it"):
        load_image(path, window=(60, 0, 20, 10))


def test_float_geotiff_with_nan_nodata(geotiff_f32_nan: tuple[Path, np.ndarray]) -> None:
    path, array = geotiff_f32_nan
    image = load_image(path)
    assert image.dtype == np.float32
    assert image.nodata is not None and np.isnan(image.nodata)
    np.testing.assert_array_equal(image.array, array)  # NaNs compare equal here
    mask = image.valid_mask()
    assert not mask[0].any() and mask[1:].all()
    gray = load_image(path, bands=[1]).to_rgb_uint8()
    assert (gray[0] == 0).all() and gray[1:].max() == 255 and gray[1:].min() == 0


def test_jpeg2000_round_trip(tmp_path: Path) -> None:
    with rasterio.Env() as env:
        if "JP2OpenJPEG" not in env.drivers():
            pytest.skip("this GDAL build has no JP2OpenJPEG driver")
    array = _rng(7).integers(0, 4096, (64, 48, 3), dtype=np.uint16)
    path = _write_raster(
        tmp_path / "scene.jp2",
        array,
        driver="JP2OpenJPEG",
        crs=UTM_CRS,
        transform=UTM_TRANSFORM,
        QUALITY=100,
        REVERSIBLE="YES",
    )
    image = load_image(path)
    np.testing.assert_array_equal(image.array, array)  # reversible wavelet: lossless
    assert image.crs == UTM_CRS
    assert image.transform.almost_equals(UTM_TRANSFORM)
    part = load_image(path, window=(8, 16, 32, 16))
    np.testing.assert_array_equal(part.array, array[16:32, 8:40])


def test_envi_via_header_or_binary(tmp_path: Path) -> None:
    array = _rng(8).normal(size=(16, 24, 3)).astype(np.float32)
    binary = _write_raster(
        tmp_path / "cube.img",
        array,
        driver="ENVI",
        crs=UTM_CRS,
        transform=UTM_TRANSFORM,
        descriptions=["b450", "b550", "b650"],
    )
    assert (tmp_path / "cube.hdr").is_file()
    for source in (binary, tmp_path / "cube.hdr", str(binary)):
        image = load_image(source)
        np.testing.assert_array_equal(image.array, array)
        assert image.band_names == ["b450", "b550", "b650"]
        assert image.crs == UTM_CRS and image.transform == UTM_TRANSFORM
    (tmp_path / "cube.img").unlink()
    with pytest.raises(ImageNotFoundError, match="no data file beside it"):
        load_image(tmp_path / "cube.hdr")


# --------------------------------------------------------------------------- in-memory sources


def test_pil_image_source(rgb_array: np.ndarray) -> None:
    image = load_image(PIL.Image.fromarray(rgb_array))
    np.testing.assert_array_equal(image.array, rgb_array)
    assert image.source == "<PIL image>" and image.transform is None

    cmyk = load_image(PIL.Image.new("CMYK", (5, 4), (0, 255, 255, 0)))
    assert cmyk.band_names == ["red", "green", "blue"]
    np.testing.assert_array_equal(cmyk.array[0, 0], [255, 0, 0])
    bitonal = load_image(PIL.Image.new("1", (3, 2), 1))
    assert bitonal.dtype == np.uint8 and (bitonal.array == 255).all()
    la = load_image(PIL.Image.new("LA", (3, 2), (7, 0)))
    assert la.band_names == ["gray", "alpha"] and not la.valid_mask().any()
    assert load_image(PIL.Image.new("F", (3, 2), 0.5)).dtype == np.float32

    buffer = io.BytesIO()
    PIL.Image.fromarray(_rng(13).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    lazy = PIL.Image.open(io.BytesIO(buffer.getvalue()[:5000]))  # header fine, data cut short
    with pytest.raises(CorruptImageError, match="truncated"):
        load_image(lazy)


def test_image_source_keeps_metadata(geotiff_u16: tuple[Path, np.ndarray]) -> None:
    path, array = geotiff_u16
    full = load_image(path)
    part = load_image(full, window=(17, 9, 20, 12), bands=["red"])
    reread = load_image(path, window=(17, 9, 20, 12), bands=["red"])
    np.testing.assert_array_equal(part.array, reread.array)
    assert part.transform == reread.transform and part.crs == UTM_CRS
    assert part.nodata == 0 and part.band_names == ["red"] and part.source == str(path)


def test_numpy_sources_and_layouts() -> None:
    hw = np.arange(12, dtype=np.int16).reshape(3, 4)
    image = load_image(hw)
    assert (
        image.array.shape == (3, 4, 1)
        and image.band_names == ["gray"]
        and image.source == "<array>"
    )

    chw = _rng(9).random((4, 20, 30), dtype=np.float32)
    image = load_image(chw)  # first dim <= 16, last > 16: channels first
    assert image.array.shape == (20, 30, 4)
    np.testing.assert_array_equal(image.array, np.moveaxis(chw, 0, -1))
    assert image.band_names == ["band_1", "band_2", "band_3", "band_4"]
    # Unnamed 4 bands are taken as R, G, B, NIR.
    rgb = image.to_rgb_uint8()
    np.testing.assert_array_equal(rgb, image.to_rgb_uint8(bands=[1, 2, 3]))

    ambiguous = np.zeros((3, 10, 10), np.uint8)
    assert load_image(ambiguous).array.shape == (3, 10, 10)  # read as H×W×C

    hwc = _rng(10).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    image = load_image(hwc, window=(1, 2, 4, 3), bands=["green"])
    np.testing.assert_array_equal(image.array, hwc[2:5, 1:5, 1:2])


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((0, 5, 3), np.uint8), ImageError),
        (np.zeros((4, 0), np.float32), ImageError),
        (np.zeros((4, 4), bool), UnsupportedImageError),
        (np.zeros((4, 4), np.complex64), UnsupportedImageError),
        (np.zeros((2, 2, 2, 2), np.uint8), UnsupportedImageError),
        (np.array([["a"]]), UnsupportedImageError),
        (12345, UnsupportedImageError),
    ],
)
def test_bad_arrays_and_types(bad, error) -> None:
    with pytest.raises(error):
        load_image(bad)


def test_bytes_and_file_objects(tmp_path: Path, rgb_array: np.ndarray, geotiff_u16) -> None:
    buffer = io.BytesIO()
    PIL.Image.fromarray(rgb_array).save(buffer, format="PNG")
    data = buffer.getvalue()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        image = load_image(source)
        np.testing.assert_array_equal(image.array, rgb_array)
    assert load_image(data).source == "<bytes>"

    path, array = geotiff_u16
    with open(path, "rb") as f:
        image = load_image(f)
    np.testing.assert_array_equal(image.array, array)
    assert image.crs == UTM_CRS and image.band_names[3] == "red" and image.source == str(path)
    assert read_header(path.read_bytes()).transform == UTM_TRANSFORM
    with pytest.raises(UnsupportedImageError, match="binary mode"):
        load_image(io.StringIO("not bytes"))


# --------------------------------------------------------------------------- errors and guards


def test_missing_empty_and_folder_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    assert issubclass(ImageNotFoundError, FileNotFoundError)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(CorruptImageError, match=r"empty\.tif.*0 bytes"):
        load_image(tmp_path / "empty.tif")
    with pytest.raises(CorruptImageError, match="0 bytes"):
        load_image(b"")
    with pytest.raises(UnsupportedImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("name", ["noise.tif", "noise.png", "noise.jp2", "noise.jpg"])
def test_random_bytes_with_image_name_is_corrupt(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptImageError, match=name.replace(".", r"\.")):
        load_image(path)


def test_truncated_files_are_corrupt(tmp_path: Path, rgb_array: np.ndarray, geotiff_u16) -> None:
    big = _rng(12).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    for name in ("big.png", "big.jpg"):
        PIL.Image.fromarray(big).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptImageError, match=name.replace(".", r"\.")):
            load_image(tmp_path / name)
    path, _ = geotiff_u16
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptImageError, match=r"cut\.tif"):
        load_image(cut)


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello, not an image\n" * 20)
    with pytest.raises(UnsupportedImageError, match="recognised image format"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(UnsupportedImageError, match="URL"):
        load_image("https://example.com/scene.tif")


def test_complex_raster_is_unsupported(tmp_path: Path) -> None:
    slc = (np.ones((8, 8, 1)) * (1 + 2j)).astype(np.complex64)
    path = _write_raster(tmp_path / "slc.tif", slc)
    with pytest.raises(UnsupportedImageError, match="complex"):
        load_image(path)


def test_oversize_geotiff_header_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.tif"
    profile = dict(tiled=True, blockxsize=1024, blockysize=1024, compress="deflate", sparse_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=200_000,
            height=150_000,
            count=3,
            dtype="uint8",
            **profile,
        ):
            pass  # no block is written: the file stays tiny
    assert path.stat().st_size < 500_000

    def no_read(*args, **kwargs):
        raise AssertionError("pixels were read before the size check")

    monkeypatch.setattr(DatasetReader, "read", no_read)
    with pytest.raises(ImageTooLargeError, match=r"200000×150000.*max_pixels=") as excinfo:
        load_image(path)
    assert "window=" in str(excinfo.value)
    info = read_header(path)  # the header alone is fine
    assert info.size == (200_000, 150_000) and info.count == 3
    monkeypatch.undo()
    part = load_image(path, window=(1000, 2000, 64, 32))  # a window of it is fine too
    assert part.array.shape == (32, 64, 3) and not part.array.any()
    with pytest.raises(ImageTooLargeError, match="window of a 200000×150000"):
        load_image(path, window=(0, 0, 100, 100), max_pixels=10_000)


def test_small_max_pixels_and_huge_png_header(tmp_path: Path, rgb_array: np.ndarray) -> None:
    before = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.fromarray(rgb_array).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError, match="7,200 values"):
        load_image(tmp_path / "small.png", max_pixels=1000)
    assert load_image(tmp_path / "small.png", max_pixels=7200).count == 3

    (tmp_path / "huge.png").write_bytes(_huge_png_bytes())
    with pytest.raises(ImageTooLargeError, match="100000×100000"):
        load_image(tmp_path / "huge.png")
    with pytest.raises(ImageTooLargeError):
        load_image(_huge_png_bytes())
    assert read_header(tmp_path / "huge.png").size == (100_000, 100_000)
    assert PIL.Image.MAX_IMAGE_PIXELS == before  # never changed, even temporarily visible


def test_pillow_bomb_guard_becomes_our_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "huge.png").write_bytes(_huge_png_bytes())
    # When rasterio cannot open the file, Pillow's own guard is the last line of defence.
    monkeypatch.setattr(raster_opening, "_open_dataset", lambda *args: None)
    with pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        load_image(tmp_path / "huge.png")
    assert issubclass(ImageTooLargeError, GeoAssistError)


def test_to_rgb_errors_and_hints() -> None:
    thirteen = Image(np.zeros((4, 4, 13), np.uint16), [f"band_{i}" for i in range(1, 14)])
    with pytest.raises(
        BandMismatchError, match=r"13 bands named band_1\.\.band_13; pass bands=\["
    ) as e:
        thirteen.to_rgb_uint8()
    assert "sensor preset" in str(e.value)
    assert thirteen.to_rgb_uint8(bands=[4, 3, 2]).shape == (4, 4, 3)
    two = Image(np.zeros((4, 4, 2), np.uint8), ["vv", "vh"])
    with pytest.raises(BandMismatchError, match="vv, vh"):
        two.to_rgb_uint8()
    assert two.to_rgb_uint8(bands=["vh"]).shape == (4, 4, 3)
    with pytest.raises(BandMismatchError, match="3 bands"):
        two.to_rgb_uint8(bands=[1, 2])


def test_image_validation_and_not_georeferenced() -> None:
    with pytest.raises(BandMismatchError):
        Image(np.zeros((2, 2, 3), np.uint8), ["a", "b"])
    with pytest.raises(UnsupportedImageError):
        Image(np.zeros((2, 2), np.uint8), ["gray"])
    image = Image(np.zeros((2, 2, 1), np.uint8), ["gray"])
    with pytest.raises(ImageError, match="not georeferenced"):
        image.pixel_to_map(0, 0)
    constant = Image(np.full((3, 3, 1), 7, np.uint16), ["gray"])
    assert constant.to_rgb_uint8().shape == (3, 3, 3)  # a constant band does not divide by zero


def test_concurrent_loads_are_independent(
    tmp_path: Path, geotiff_u16, rgb_array: np.ndarray
) -> None:
    path, array = geotiff_u16
    PIL.Image.fromarray(rgb_array).save(tmp_path / "rgb.png")
    PIL.Image.fromarray(rgb_array).save(tmp_path / "plain.tif")
    sources = [path, tmp_path / "rgb.png", tmp_path / "plain.tif"] * 4
    expected = [array, rgb_array, rgb_array] * 4
    results: list[object] = [None] * len(sources)
    filters_before = list(warnings.filters)

    def work(i: int) -> None:
        try:
            results[i] = load_image(sources[i]).array
        except Exception as exc:  # surfaced by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert isinstance(got, np.ndarray), got
        np.testing.assert_array_equal(got, want)
    assert list(warnings.filters) == filters_before


def test_package_exports_loader() -> None:
    import geoassist

    assert geoassist.load_image is load_image and geoassist.Image is Image


# --------------------------------------------------------------------------- real samples


@pytest.mark.realdata
def test_real_landsat_rgb_byte(rs_samples: Path) -> None:
    path = rs_samples / "geotiff/rasterio/RGB.byte.tif"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    image = load_image(path)
    assert image.array.shape == (718, 791, 3) and image.dtype == np.uint8
    assert image.band_names == ["red", "green", "blue"]
    assert image.crs == CRS.from_epsg(32618) and image.nodata == 0
    assert not image.valid_mask()[0, 0] and image.valid_mask().mean() > 0.5
    part = load_image(path, window=(300, 200, 64, 48))
    np.testing.assert_array_equal(part.array, image.array[200:248, 300:364])


@pytest.mark.realdata
def test_real_spacenet_pan(rs_samples: Path) -> None:
    path = rs_samples / "geotiff/spacenet_solaris/sample_geotiff.tif"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    image = load_image(path)
    assert image.array.shape == (900, 900, 1) and image.dtype == np.uint16
    assert image.crs == CRS.from_epsg(32616) and image.band_names == ["gray"]
    rgb = image.to_rgb_uint8()
    assert rgb.shape == (900, 900, 3) and rgb.max() == 255


@pytest.mark.realdata
def test_real_eurosat_ms_13_bands(rs_samples: Path) -> None:
    files = sorted((rs_samples / "format_only_synthetic/eurosat_ms").rglob("*.tif"))
    if not files:
        pytest.skip("EuroSAT-MS samples not present")
    for path in files:
        image = load_image(path)
        assert image.array.shape == (64, 64, 13) and image.dtype == np.uint16
        assert image.band_names == [f"band_{i}" for i in range(1, 14)]
        assert image.crs is not None and image.crs.to_epsg() is not None
        with pytest.raises(BandMismatchError, match="band_1..band_13"):
            image.to_rgb_uint8()
        assert image.to_rgb_uint8(bands=[4, 3, 2]).shape == (64, 64, 3)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative, size",
    [("rsvqa/LR_reduced/images/0.png", (256, 256)), ("dota/images/P1888.png", (712, 557))],
)
def test_real_pngs(rs_samples: Path, relative: str, size: tuple[int, int]) -> None:
    path = rs_samples / relative
    if not path.is_file():
        pytest.skip(f"{path} not present")
    image = load_image(path)
    assert image.size == size and image.count == 3 and image.dtype == np.uint8
    assert image.transform is None and image.band_names == ["red", "green", "blue"]
    assert read_header(path).size == size


# --------------------------------------------------------------------------- the windowed reader


def test_open_raster_reads_windows_resampled_and_overviews(tmp_path: Path, geotiff_u16) -> None:
    path, array = geotiff_u16
    with gio.open_raster(path) as reader:
        assert isinstance(reader, gio.RasterReader) and reader.info == read_header(path)
        part = reader.read([3, 1], (10, 20, 30, 16))
        np.testing.assert_array_equal(part.array, array[20:36, 10:40][:, :, [3, 1]])
        assert part.band_names == ["red", "blue"]
        assert part.transform.c == UTM_TRANSFORM.c + 10 * 10 and part.transform.a == 10
        half = reader.read(None, (10, 20, 30, 16), out_size=(15, 8))
        assert half.array.shape == (8, 15, 4) and half.transform.a == 20 and half.transform.e == -20
        overview = reader.read_overview(35)
        assert overview.size == (35, 25) and overview.transform.a == 20
    # The same interface over an array, a PIL image and PNG bytes.
    rgb = (array[:, :, :3] % 256).astype(np.uint8)
    cases = [
        (array, array),
        (PIL.Image.fromarray(array[:, :, 0]), array[:, :, :1]),
        (_png(rgb), rgb),
    ]
    for source, expected in cases:
        with gio.open_raster(source) as reader:
            part = reader.read(None, (10, 20, 30, 16))
            np.testing.assert_array_equal(part.array, expected[20:36, 10:40])
            assert reader.read_overview(35).size == (35, 25)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _forged_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose IHDR claims width × height RGB pixels and whose IDAT holds one tiny row."""
    data = _huge_png_bytes(width, height)
    assert len(data) < 80  # the 74-byte bomb of the issue
    return data


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(DatasetReader, "read", refuse)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", refuse)


def test_png_bomb_refused_from_its_header_on_every_read_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from geoassist.large.sources import RasterSource

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_forged_png())
    _no_decoding(monkeypatch)
    started = time.perf_counter()
    for source in (bomb, bomb.read_bytes()):
        with gio.open_raster(source) as reader:
            assert reader.info.size == (100_000, 100_000)
            with pytest.raises(ImageTooLargeError, match=r"100000×100000 .*decoded whole"):
                reader.read_overview(1024)  # a 1024² output, but PNG is decoded whole
            with pytest.raises(ImageTooLargeError, match="decoded whole"):
                reader.read(None, (0, 0, 64, 64))
    # The large-scene path of the issue: refused when opened, before any tile is planned.
    with pytest.raises(ImageTooLargeError, match="tiled GeoTIFF"):
        RasterSource.open(bomb)
    with pytest.raises(ImageTooLargeError):
        load_image(bomb, window=(0, 0, 64, 64))
    assert time.perf_counter() - started < 5  # from the header: it took 41 s to fail before


def test_png_bomb_through_ask_is_one_clear_error(tmp_path: Path, make_tiny) -> None:
    from geoassist.assistant import Assistant

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_forged_png())
    with pytest.raises(ImageTooLargeError, match="bomb.png is 100000×100000"):
        Assistant(make_tiny()).ask(bomb, "How many ships are there?")


def test_decimated_read_without_overviews_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sparse.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=200_000, height=150_000, count=3,
                           dtype="uint8", tiled=True, blockxsize=512, blockysize=512,
                           compress="deflate", sparse_ok=True):  # fmt: skip
            pass
    _no_decoding(monkeypatch)
    with gio.open_raster(path) as reader:
        assert not reader.has_overviews
        with pytest.raises(ImageTooLargeError, match=r"no overviews at that scale.*gdaladdo"):
            reader.read_overview(1024)
    from geoassist.large.sources import RasterSource

    with pytest.raises(ImageTooLargeError, match="no overviews"):
        RasterSource.open(path)  # a large-scene answer would need that overview
    monkeypatch.undo()
    with gio.open_raster(path, max_pixels=None) as reader:  # trusted: no cap
        assert reader.read(None, (0, 0, 1024, 1024), out_size=(8, 8)).array.shape == (8, 8, 3)


def test_read_errors_become_corrupt_image_errors(tmp_path: Path) -> None:
    from geoassist.large.sources import RasterSource

    array = _rng(13).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    path = _write_raster(tmp_path / "scene.tif", array, tiled=True, blockxsize=64,
                         blockysize=64, compress="deflate")  # fmt: skip
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = b"\xff" * 4000  # damage the compressed blocks
    path.write_bytes(bytes(data))
    assert read_header(path).size == (256, 256)  # the header is intact
    with pytest.raises(CorruptImageError, match=r"scene\.tif cannot be decoded.*re-download"):
        load_image(path)
    with RasterSource.open(path) as source, pytest.raises(CorruptImageError):
        for row in range(0, 256, 64):
            source.read((0, row, 256, 64))


def test_urls_are_refused_by_load_image_and_fail_clearly_offline() -> None:
    with pytest.raises(UnsupportedImageError, match="download the file and pass its local path"):
        load_image("https://example.com/scene.tif")
    # The large-scene reader reads COGs over HTTP; with nothing listening it says what to do.
    with pytest.raises(ImageError, match=r"check the address and the network connection") as exc:
        gio.open_raster("http://127.0.0.1:9/scene.tif")
    assert "download the file" in str(exc.value)


def test_symlink_loops_and_dangling_links_have_their_own_messages(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ImageError, match=r"a\.tif is a symbolic link that loops back on itself"):
        load_image(a)
    with pytest.raises(ImageError, match="loops back on itself"):
        gio.open_raster(a)
    dangling = tmp_path / "scene.png"
    dangling.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageNotFoundError, match=r"symbolic link to .*gone\.png, which does not"):
        load_image(dangling)
