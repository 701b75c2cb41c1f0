"""Small synthetic inputs of the kinds of issue #23, written as users receive them: a CSV of
longitude/latitude points over a raster in the MODIS sinusoidal projection, single-band files at
10, 20 and 60 m (JPEG2000 where this GDAL writes it, else GeoTIFF) with a label raster whose 0 is
background, a date stack of unnamed single-band files, and polygons with invalid geometries.

Three classes in vertical stripes (a third of the columns each) with distinct values in every
band, so that any sensible model separates them and a map comparison is meaningful.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import yaml
from rasterio.transform import from_origin

CLASSES = [
    {"id": 1, "name": "water", "color": "#2166ac"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
]
NAMES = {c["id"]: c["name"] for c in CLASSES}
#: MODIS sinusoidal (the projection of MODIS land products), not UTM.
SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
SINU_ORIGIN = (1_000_000.0, 5_000_000.0)  # about 12.7 E, 45 N


def stripes(n: int) -> np.ndarray:
    """(n, n) class ids 1, 2, 3 in three vertical stripes."""
    return (np.minimum(np.arange(n) * 3 // n, 2)[None, :].repeat(n, 0) + 1).astype(np.uint8)


def band_values(cls: np.ndarray, means: tuple[float, float, float], seed: int, noise: float = 40.0) -> np.ndarray:
    """uint16 values of one band: a mean per class plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    return (np.asarray(means)[cls - 1] + rng.normal(0, noise, cls.shape)).clip(1, 65535).astype(np.uint16)


def jpeg2000_writable() -> bool:
    """Whether this GDAL has a JPEG2000 driver that writes (JP2OpenJPEG)."""
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers()


def write_band(path: Path, data: np.ndarray, res: float, crs: str, origin: tuple[float, float], nodata=None) -> Path:
    """One single-band file: JPEG2000 (lossless) for a ``.jp2`` path, else GeoTIFF."""
    profile = dict(
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(origin[0], origin[1], res, res),
        nodata=nodata,
    )
    if path.suffix == ".jp2":
        profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    else:
        profile.update(driver="GTiff")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])
    return path


def squares(cls: np.ndarray, size: int, step: int) -> np.ndarray:
    """A label raster: ``size``-pixel squares of the class below them every ``step`` pixels, 0 elsewhere."""
    n = cls.shape[0]
    lab = np.zeros_like(cls)
    for r in range(2, n - size, step):
        for c in range(2, n - size, step):
            lab[r : r + size, c : c + size] = cls[r, c]
    return lab


def write_config(folder: Path, rasters: dict, labels: dict, models: dict | None = None, **extra) -> Path:
    cfg = {
        "name": folder.name,
        "seed": 0,
        "rasters": rasters,
        "labels": labels,
        "classes": CLASSES,
        "patch": {"size": 3},
        "split": {"random_contrast": False},
        "models": models or {"decision_tree": {}},
        "mapping": {"window_size": 32, "workers": 1},
        **extra,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def mixed_resolution_scene(folder: Path, n: int = 96, models: dict | None = None) -> tuple[Path, list[Path]]:
    """Band files at 10 m (``B02``, n x n), 20 m (``B05``) and 60 m (``B09``) over one UTM square,
    and a 10 m label raster whose 0 is background (no nodata declared, no class 0). The config
    names only the files: no ``align_to``. Returns the config and the band files."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".jp2" if jpeg2000_writable() else ".tif"
    origin, crs = (600000.0, 5000000.0), "EPSG:32632"
    cls = stripes(n)
    bands = []
    for i, (name, res, means) in enumerate(
        [("B02", 10, (900, 1800, 2400)), ("B05", 20, (1400, 1200, 2300)), ("B09", 60, (2600, 700, 2200))]
    ):
        k = res // 10
        bands.append(write_band(folder / f"{name}{suffix}", band_values(cls[::k, ::k], means, i), res, crs, origin))
    write_band(folder / "labels.tif", squares(cls, 6, 12), 10, crs, origin)
    rasters = {"paths": [p.name for p in bands]}
    return write_config(folder, rasters, {"path": "labels.tif"}, models), bands


#: Sentinel-2-like band files: name, pixel size, the mean of each class. Every band orders the
#: classes differently, so a file fed to another band's place changes the map.
S2_BANDS = [
    ("B02", 10, (900, 1800, 2400)),
    ("B04", 10, (2400, 900, 1800)),
    ("B08", 10, (1800, 2400, 900)),
    ("B8A", 20, (1200, 2600, 600)),
]


def s2_band_files_scene(folder: Path, n: int = 48) -> tuple[Path, list[Path]]:
    """Single-band GeoTIFFs ``S2_B02.tif``, ``S2_B04.tif``, ``S2_B08.tif`` (10 m) and ``S2_B8A.tif``
    (20 m) over one UTM square, with ``rasters.band_names: [B02, B04, B08, B8A]`` in the config, so
    the model's band names are words of the file names, not the names themselves. Returns the config
    and the band files in the model's order."""
    folder.mkdir(parents=True, exist_ok=True)
    origin, crs = (600000.0, 5000000.0), "EPSG:32632"
    cls = stripes(n)
    files = []
    for i, (name, res, means) in enumerate(S2_BANDS):
        k = res // 10
        files.append(write_band(folder / f"S2_{name}.tif", band_values(cls[::k, ::k], means, 10 + i), res, crs, origin))
    write_band(folder / "labels.tif", squares(cls, 5, 10), 10, crs, origin)
    rasters = {"paths": [p.name for p in files], "band_names": [b[0] for b in S2_BANDS]}
    return write_config(folder, rasters, {"path": "labels.tif"}), files


def sinusoidal_points_scene(folder: Path, n: int = 64, res: float = 250.0) -> tuple[Path, pd.DataFrame]:
    """A 3-band raster in the MODIS sinusoidal projection and ``samples.csv``: one point per row
    (longitude, latitude, class) on pixel centres, plus a row without coordinates and one with a
    latitude of 95 degrees (both of class water). Returns the config and the table."""
    from pyproj import Transformer

    folder.mkdir(parents=True, exist_ok=True)
    cls = stripes(n)
    img = np.stack(
        [band_values(cls, m, i) for i, m in enumerate([(900, 1800, 2400), (1400, 1200, 2300), (2600, 700, 2200)])]
    )
    tr = from_origin(*SINU_ORIGIN, res, res)
    with rasterio.open(
        folder / "modis.tif",
        "w",
        driver="GTiff",
        width=n,
        height=n,
        count=3,
        dtype="uint16",
        crs=SINUSOIDAL,
        transform=tr,
    ) as dst:
        dst.write(img)
    to_lonlat = Transformer.from_crs(SINUSOIDAL, "EPSG:4326", always_xy=True)
    rows = []
    for r in range(3, n, 6):
        for c in range(1, n, 5):
            x, y = tr * (c + 0.5, r + 0.5)
            lon, lat = to_lonlat.transform(x, y)
            rows.append({"Longitude": lon, "Latitude": lat, "class": NAMES[int(cls[r, c])]})
    rows.append({"Longitude": None, "Latitude": None, "class": "water"})
    rows.append({"Longitude": 12.8, "Latitude": 95.0, "class": "water"})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "samples.csv", index=False)
    return write_config(folder, {"paths": ["modis.tif"]}, {"path": "samples.csv", "field": "class"}), table


DATES = ["2019-01-01", "2019-04-01", "2019-07-01", "2019-10-01"]
#: NDVI x 10,000 of each class at each date: water flat, forest seasonal, urban low.
NDVI = {1: [-500, -400, -500, -450], 2: [3000, 6000, 8000, 4000], 3: [2000, 2500, 2000, 2200]}
NDVI_NODATA = -3000


def date_stack_scene(folder: Path, n: int = 48) -> tuple[Path, list[Path]]:
    """An NDVI series of four dates as unnamed single-band int16 GeoTIFFs (nodata -3000) in the
    sinusoidal projection, a label raster with 0 as background, and a config with
    ``rasters.dates`` and ``band_names: [NDVI]``. Returns the config and the date files."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = stripes(n)
    rng = np.random.default_rng(3)
    files = []
    for i in range(len(DATES)):
        means = np.array([NDVI[k][i] for k in (1, 2, 3)], dtype=np.float64)
        a = (means[cls - 1] + rng.normal(0, 150, cls.shape)).astype(np.int16)
        files.append(write_band(folder / f"ndvi_{i}.tif", a, 250.0, SINUSOIDAL, SINU_ORIGIN, nodata=NDVI_NODATA))
    write_band(folder / "labels.tif", squares(cls, 5, 10), 250.0, SINUSOIDAL, SINU_ORIGIN)
    rasters = {"paths": [p.name for p in files], "dates": DATES, "band_names": ["NDVI"]}
    return write_config(folder, rasters, {"path": "labels.tif"}), files


def invalid_polygons_scene(folder: Path, n: int = 64) -> Path:
    """A 2-band UTM raster and a GeoPackage of square polygons (one per 10-pixel cell) plus three
    broken ones apart from the rest: a self-intersecting bow tie (water; make_valid repairs it
    into two triangles), a polygon collapsed to a line (forest; cannot be repaired) and an empty
    polygon (urban). Returns the config."""
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    folder.mkdir(parents=True, exist_ok=True)
    cls = stripes(n)
    origin, crs = (600000.0, 5000000.0), "EPSG:32632"
    tr = from_origin(*origin, 10, 10)
    img = np.stack([band_values(cls, m, i) for i, m in enumerate([(900, 1800, 2400), (1400, 1200, 2300)])])
    with rasterio.open(
        folder / "scene.tif", "w", driver="GTiff", width=n, height=n, count=2, dtype="uint16", crs=crs, transform=tr
    ) as dst:
        dst.write(img)
    geoms, names = [], []
    for r in range(2, n - 12, 10):
        for c in range(2, n - 6, 10):
            x0, y0 = tr * (c, r)
            geoms.append(box(x0, y0 - 50, x0 + 50, y0))
            names.append(NAMES[int(cls[r + 2, c + 2])])
    x0, y0 = tr * (2, n - 8)  # the bottom rows, where no square lies
    geoms.append(Polygon([(x0, y0), (x0 + 60, y0 - 60), (x0 + 60, y0), (x0, y0 - 60)]))
    geoms.append(Polygon([(x0 + 300, y0), (x0 + 330, y0), (x0 + 360, y0)]))
    geoms.append(Polygon())
    names += ["water", "forest", "urban"]
    gpd.GeoDataFrame({"class": names}, geometry=geoms, crs=crs).to_file(folder / "labels.gpkg")
    return write_config(folder, {"paths": ["scene.tif"]}, {"path": "labels.gpkg", "field": "class"})
