"""Pixel ↔ map ↔ lon/lat against rasterio's own transforms, on real GeoTIFFs and LEVIR-CD footprints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import rasterio.warp
import rasterio.windows
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from shapely.geometry import Point, shape

from geoassist.assistant import Answer
from geoassist.geo import (
    Georef,
    NotGeoreferencedError,
    answer_to_geojson,
    mask_to_polygons,
)

REAL_GEOTIFFS = [
    ("geotiff/spacenet_solaris/sample_geotiff.tif", 32616),
    ("geotiff/spacenet_solaris/preproc_tutorial/ms1.tif", 32631),
    ("geotiff/spacenet_solaris/preproc_tutorial/rgb_unmasked.tif", 32631),
    ("geotiff/rasterio/RGB.byte.tif", 32618),
]


@pytest.mark.realdata
@pytest.mark.parametrize("rel, epsg", REAL_GEOTIFFS)
def test_real_geotiffs_match_rasterio(rs_samples, rel, epsg):
    from geoassist.io import read_header

    path = rs_samples / rel
    info = read_header(path)
    georef = Georef.from_image(info)
    assert georef is not None and georef.crs.to_epsg() == epsg
    rng = np.random.default_rng(epsg)
    rows = rng.integers(0, info.height, 50)
    cols = rng.integers(0, info.width, 50)
    with rasterio.open(path) as ds:
        # Pixel centres: rasterio's xy(row, col) with offset="center" is our (col + .5, row + .5).
        xs, ys = ds.xy(rows, cols, offset="center")
        mx, my = georef.pixel_to_map(cols + 0.5, rows + 0.5)
        np.testing.assert_allclose(mx, xs, atol=1e-6)
        np.testing.assert_allclose(my, ys, atol=1e-6)
        # Upper-left corners and the inverse (rasterio's index floors the fractional position).
        xs_ul, ys_ul = ds.xy(rows, cols, offset="ul")
        px, py = georef.map_to_pixel(xs_ul, ys_ul)
        np.testing.assert_allclose(px, cols, atol=1e-6)
        np.testing.assert_allclose(py, rows, atol=1e-6)
        r_idx, c_idx = rasterio.transform.rowcol(ds.transform, xs, ys)
        np.testing.assert_array_equal(np.floor(georef.map_to_pixel(xs, ys)[0]), c_idx)
        np.testing.assert_array_equal(np.floor(georef.map_to_pixel(xs, ys)[1]), r_idx)
        # Lon/lat against rasterio.warp (GDAL/PROJ) for the same points.
        lon_ref, lat_ref = rasterio.warp.transform(ds.crs, "EPSG:4326", list(xs), list(ys))
        lon, lat = georef.pixel_to_lonlat(cols + 0.5, rows + 0.5)
        np.testing.assert_allclose(lon, lon_ref, atol=1e-9)
        np.testing.assert_allclose(lat, lat_ref, atol=1e-9)
        # Back from lon/lat to pixels.
        bx, by = georef.lonlat_to_pixel(lon, lat)
        np.testing.assert_allclose(bx, cols + 0.5, atol=1e-5)
        np.testing.assert_allclose(by, rows + 0.5, atol=1e-5)
        # Windows: our shifted transform equals rasterio.windows.transform.
        win = rasterio.windows.Window(17, 9, 40, 30)
        assert georef.window(17, 9).transform.almost_equals(
            rasterio.windows.transform(win, ds.transform)
        )
        # Bounds in the CRS and in lon/lat.
        np.testing.assert_allclose(georef.bounds(), tuple(ds.bounds), atol=1e-6)
        west, south, east, north = rasterio.warp.transform_bounds(
            ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21
        )
        np.testing.assert_allclose(georef.lonlat_bounds(), (west, south, east, north), atol=1e-7)
        assert georef.gsd_m == pytest.approx((abs(ds.res[0]) + abs(ds.res[1])) / 2)


@pytest.mark.realdata
def test_spacenet_building_polygons_to_pixels_match_gdal_burn(rs_samples):
    """The SpaceNet labels (EPSG:32616) moved to pixels burn the same pixels GDAL burns in map space."""
    from rasterio import features

    folder = rs_samples / "geotiff" / "spacenet_solaris"
    with rasterio.open(folder / "sample_geotiff.tif") as ds:
        georef = Georef.from_dataset(ds)
        shape_hw = (ds.height, ds.width)
    labels = json.loads((folder / "geotiff_labels.geojson").read_text())
    assert "32616" in labels["crs"]["properties"]["name"]
    polygons = [shape(f["geometry"]) for f in labels["features"]]
    assert len(polygons) == 43
    inverse = ~georef.transform
    in_pixels = [
        shapely.affinity.affine_transform(
            p, [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
        )
        for p in polygons
    ]
    for p, q in zip(polygons, in_pixels, strict=True):
        x, y = georef.map_to_pixel(p.centroid.x, p.centroid.y)
        assert q.centroid.distance(Point(x, y)) < 1e-6
        assert 0 <= x <= shape_hw[1] and 0 <= y <= shape_hw[0]
    burned_map = features.rasterize(polygons, out_shape=shape_hw, transform=georef.transform)
    burned_px = features.rasterize(in_pixels, out_shape=shape_hw, transform=Affine.identity())
    assert burned_map.sum() > 10_000
    np.testing.assert_array_equal(burned_map, burned_px)
    # Back to the map: the pixel geometry lands on the original polygons.
    for p, q in zip(polygons, in_pixels, strict=True):
        assert georef.geometry_to_map(q).symmetric_difference(p).area < 1e-6


def _levir_parent(rs_samples, name: str) -> Georef:
    coords = json.loads(
        (rs_samples / "change_detection/levir_geo/LEVIR_CD_name_coords.json").read_text()
    )
    lon_ul, lat_ul, lon_lr, lat_lr = coords[name]
    # LEVIR-CD originals are 1024×1024 north-up lon/lat images.
    transform = rasterio.transform.from_bounds(lon_ul, lat_lr, lon_lr, lat_ul, 1024, 1024)
    return Georef(transform, CRS.from_epsg(4326), 1024, 1024)


@pytest.mark.realdata
def test_levir_crops_on_their_footprints(rs_samples):
    crops = sorted(p.name for p in (rs_samples / "change_detection/samples_LEVIR/A").glob("*.png"))
    footprints = json.loads(
        (rs_samples / "change_detection/levir_geo/LEVIR_CD_name_coords.geojson").read_text()
    )
    # The published file writes each Polygon as one bare ring (no list of rings around it).
    by_name = {
        f["properties"]["name"]: shapely.Polygon(f["geometry"]["coordinates"])
        for f in footprints["features"]
    }
    assert crops
    for crop in crops:
        split, parent, row, col = crop[: -len(".png")].split("_")
        georef = _levir_parent(rs_samples, f"{split}_{parent}.png")
        # LEVIR-CD's nominal GSD is 0.5 m; its footprints are square in degrees, so at 30° N a
        # pixel measures about 0.52 m east-west and 0.60 m north-south.
        assert 0.5 < georef.gsd_m < 0.6
        crop_ref = georef.window(int(col), int(row), 256, 256)
        assert crop_ref.transform.almost_equals(
            rasterio.windows.transform(
                rasterio.windows.Window(int(col), int(row), 256, 256), georef.transform
            )
        )
        west, south, east, north = crop_ref.lonlat_bounds()
        parent_fp = by_name[f"{split}_{parent}.png"]
        assert parent_fp.buffer(1e-6).contains(shapely.box(west, south, east, north))
        # A crop of 256 px is a quarter of the 1024 px parent along each side.
        pw, ps, pe, pn = parent_fp.bounds
        assert (east - west) == pytest.approx((pe - pw) / 4, rel=1e-3)
        assert (north - south) == pytest.approx((pn - ps) / 4, rel=1e-3)
        # The crop centre, through UTM zone 14 and back, is the same lon/lat.
        lon, lat = crop_ref.pixel_to_lonlat(128, 128)
        utm = Georef(Affine.identity(), CRS.from_epsg(32614))
        ex, ny = utm.lonlat_to_map(lon, lat)
        back = utm.map_to_lonlat(ex, ny)
        np.testing.assert_allclose(back, (lon, lat), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-1e6, 1e6),
    st.floats(-1e7, 1e7),
    st.floats(0.05, 100),
    st.floats(-0.3, 0.3),
    st.floats(0, 5000),
    st.floats(0, 5000),
)
def test_pixel_map_round_trip(x0, y0, res, shear, px, py):
    georef = Georef(Affine(res, shear, x0, shear / 2, -res, y0))
    mx, my = georef.pixel_to_map(px, py)
    bx, by = georef.map_to_pixel(mx, my)
    assert math.isclose(bx, px, abs_tol=1e-5) and math.isclose(by, py, abs_tol=1e-5)
    # Window then pixel = pixel of the whole raster, shifted.
    w = georef.window(10, 20)
    np.testing.assert_allclose(w.pixel_to_map(px - 10, py - 20), (mx, my), rtol=1e-12, atol=1e-6)
    s = georef.scaled(4)
    np.testing.assert_allclose(s.pixel_to_map(px / 4, py / 4), (mx, my), rtol=1e-12, atol=1e-6)


def _utm_georef() -> Georef:
    # 0.5 m pixels in UTM 31N near Paris.
    return Georef(Affine(0.5, 0, 448_000.0, 0, -0.5, 5_412_000.0), CRS.from_epsg(32631), 400, 300)


def test_answer_geometry_and_geojson():
    georef = _utm_georef()
    answer = Answer(
        text="two ships",
        boxes=[
            {"label": "ship", "box": [10.0, 20.0, 50.0, 40.0], "score": None},
            {"label": "ship", "box": [200.0, 100.0, 260.0, 130.0], "score": 0.9},
        ],
        obboxes=[
            {
                "label": "car",
                "obox": [100, 100, 20, 10, 30],
                "corners": [[90, 95], [110, 95], [110, 105], [90, 105]],
                "score": None,
            }
        ],
        polygons=[{"label": "pond", "points": [[300, 200], [350, 200], [330, 260]]}],
        mask=np.zeros((300, 400), bool),
        task="ground",
        image_size=(400, 300),
        georef=georef,
    )
    answer.mask[100:150, 50:120] = True
    # Map coordinates are computed when the answer is serialised; the items stay in pixels.
    assert "box_map" not in answer.boxes[0]
    first = answer.to_dict()["boxes"][0]
    assert first["box_map"] == [448_005.0, 5_411_980.0, 448_025.0, 5_411_990.0]
    assert len(first["polygon_map"]) == 4 and len(first["polygon_lonlat"]) == 4
    assert answer.geo["crs"] == "EPSG:32631" and answer.geo["georeferenced"]
    assert answer.geo["gsd_m"] == 0.5
    # The lon/lat polygon contains the box centre computed independently with pyproj.
    from pyproj import Transformer

    to_ll = Transformer.from_crs(32631, 4326, always_xy=True)
    lon, lat = to_ll.transform(448_015.0, 5_411_985.0)
    assert shapely.Polygon(first["polygon_lonlat"]).contains(Point(lon, lat))
    assert first["bbox_lonlat"][0] < lon < first["bbox_lonlat"][2]
    serialised = answer.to_dict()
    assert len(serialised["obboxes"][0]["corners_lonlat"]) == 4
    assert len(serialised["polygons"][0]["points_lonlat"]) == 3

    collection = answer_to_geojson(answer)
    json.dumps(collection)  # plain JSON
    kinds = [f["properties"]["kind"] for f in collection["features"]]
    assert kinds == ["box", "box", "obox", "polygon", "mask"]
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and shapely.Polygon(ring).exterior.is_ccw  # RFC 7946 winding
    assert shapely.Polygon(ring).contains(Point(lon, lat))
    mask_shape = shape(collection["features"][-1]["geometry"])
    mlon, mlat = to_ll.transform(*georef.pixel_to_map(85, 125))
    assert mask_shape.contains(Point(mlon, mlat))
    native = answer_to_geojson(answer, crs="native")
    assert native["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
    assert shape(native["features"][0]["geometry"]).bounds == (
        448_005.0,
        5_411_980.0,
        448_025.0,
        5_411_990.0,
    )
    with pytest.raises(Exception, match="EPSG:4326"):
        answer_to_geojson(answer, crs="EPSG:3857")


def test_not_georeferenced_says_so():
    answer = Answer(
        text="x", boxes=[{"label": "a", "box": [0, 0, 5, 5], "score": None}], image_size=(5, 5)
    )
    assert answer.geo["georeferenced"] is False and "not georeferenced" in answer.geo["note"]
    assert "box_map" not in answer.to_dict()["boxes"][0]
    with pytest.raises(NotGeoreferencedError, match="world file"):
        answer_to_geojson(answer)


def test_no_crs_gives_map_but_not_lonlat():
    georef = Georef(Affine(2, 0, 100, 0, -2, 500), None, 50, 50)
    answer = Answer(
        text="x", boxes=[{"label": "a", "box": [0, 0, 5, 5], "score": None}], georef=georef
    )
    box = answer.to_dict()["boxes"][0]
    assert box["box_map"] == [100.0, 490.0, 110.0, 500.0]
    assert "polygon_lonlat" not in box and answer.geo["lonlat"] is False
    assert "no CRS" in answer.geo["note"]
    with pytest.raises(NotGeoreferencedError, match="no CRS"):
        answer_to_geojson(answer)
    assert answer_to_geojson(answer, crs="native")["features"]


def test_geographic_crs_gsd_and_identity_lonlat():
    georef = Georef(Affine(1e-5, 0, 2.35, 0, -1e-5, 48.85), CRS.from_epsg(4326), 100, 100)
    lon, lat = georef.pixel_to_lonlat(50, 50)
    assert lon == pytest.approx(2.3505) and lat == pytest.approx(48.8495)
    # 1e-5 degrees is about 1.11 m of latitude and 0.73 m of longitude at 48.85° N.
    assert georef.gsd_m == pytest.approx((1.113 + 0.733) / 2, rel=0.01)


def test_mask_to_polygons_uses_the_transform():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 3:7] = True
    (poly,) = mask_to_polygons(mask, Affine(10, 0, 1000, 0, -10, 2000))
    assert poly.bounds == (1030.0, 1960.0, 1070.0, 1980.0) and poly.area == 800
    assert mask_to_polygons(np.zeros((3, 3), bool), Affine.identity()) == []
