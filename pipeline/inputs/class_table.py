"""The class table of a class map, in every form GIS tools read.

A class map is a uint8 GeoTIFF of class ids; what the ids mean travels with it as

* a ``class_names`` tag (JSON ``{"id": "name"}``) on the dataset and on band 1,
  embedded in the GeoTIFF itself (read by :func:`map_class_names` here, by
  ``landcover assess`` and by anything that lists GDAL metadata);
* a GDAL PAM sidecar ``<map>.tif.aux.xml`` holding a thematic raster attribute
  table (``Value``, ``Class``, ``Red``, ``Green``, ``Blue``, ``Alpha``), the
  category names, and a 256-entry colour table whose unused entries are fully
  transparent. The TIFF's own colour map (which a TIFF can only store as RGB, so
  its unused entries read as opaque black) stays embedded for readers without
  the sidecar; GDAL prefers the sidecar's table when both exist;
* a QGIS style ``<map>.qml`` (paletted renderer listing only the classes, with
  their names), which QGIS applies when it opens the map;
* an ArcGIS-style colour map ``<map>.clr`` (``value red green blue`` lines).

Nothing here reads or writes pixels; :func:`pipeline.mapping.class_maps.write_class_map`
is the one function that writes class maps and calls :func:`write_sidecars`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_text

NODATA_CLASS = 255  # value written to class maps where the input has no valid data

NAMES_TAG = "class_names"
_HEX = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")


def parse_color(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> (r, g, b) in 0..255: the one colour parser (config, maps, report)."""
    m = _HEX.fullmatch(str(color))
    if m is None:
        raise ValueError(f"colour must look like #rrggbb, got {color!r}")
    return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)


#: Sidecar kind -> suffix appended to (aux) or replacing (qml, clr) the map's file name.
SIDECARS = ("aux", "qml", "clr")

# GDAL raster attribute table field types and usages (gdal.h: GDALRATFieldType, GDALRATFieldUsage)
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_NAME, _GFU_MINMAX, _GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 2, 5, 6, 7, 8, 9


@dataclass(frozen=True)
class ClassTable:
    """Class ids with their names and ``#rrggbb`` colours, in the order of the run's class table."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.names) == len(self.colors)):
            raise ValueError("ids, names and colors must have the same length")
        if any(not 0 <= int(i) <= 255 for i in self.ids):
            raise ValueError(f"class ids must be 0..255 for a uint8 map, got {list(self.ids)}")

    @classmethod
    def of(cls, ids: Sequence[int], names: Sequence[str], colors: Sequence[str]) -> ClassTable:
        return cls(tuple(int(i) for i in ids), tuple(str(n) for n in names), tuple(str(c) for c in colors))

    @classmethod
    def from_meta(cls, meta: Any) -> ClassTable:
        """From a :class:`~pipeline.models.base.ModelMeta` (or anything with the three lists)."""
        return cls.of(meta.class_ids, meta.class_names, meta.class_colors)

    def rgb(self) -> dict[int, tuple[int, int, int]]:
        return {i: parse_color(c) for i, c in zip(self.ids, self.colors)}

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """256 RGBA entries: the class colours opaque, every other value (nodata too) transparent."""
        cmap = {v: (0, 0, 0, 0) for v in range(256)}
        cmap.update({i: (*rgb, 255) for i, rgb in self.rgb().items()})
        return cmap

    def names_tag(self) -> str:
        """The ``class_names`` tag value: JSON ``{"1": "water", ...}``."""
        return json.dumps({str(i): n for i, n in zip(self.ids, self.names)})

    # ------------------------------------------------------------------ sidecar texts
    def pam_xml(self) -> str:
        """GDAL PAM ``.aux.xml`` for band 1: category names, RGBA colour table, thematic RAT."""
        root = ET.Element("PAMDataset")
        band = ET.SubElement(root, "PAMRasterBand", band="1")
        ET.SubElement(band, "ColorInterp").text = "Palette"
        by_id = dict(zip(self.ids, self.names))
        cats = ET.SubElement(band, "CategoryNames")
        for v in range(max(self.ids, default=-1) + 1):  # GDAL category names are indexed by pixel value
            ET.SubElement(cats, "Category").text = by_id.get(v, "")
        ct = ET.SubElement(band, "ColorTable")
        for _v, (r, g, b, a) in sorted(self.colormap().items()):
            ET.SubElement(ct, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
        rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
        fields = [
            ("Value", _GFT_INTEGER, _GFU_MINMAX),
            ("Class", _GFT_STRING, _GFU_NAME),
            ("Red", _GFT_INTEGER, _GFU_RED),
            ("Green", _GFT_INTEGER, _GFU_GREEN),
            ("Blue", _GFT_INTEGER, _GFU_BLUE),
            ("Alpha", _GFT_INTEGER, _GFU_ALPHA),
        ]
        for k, (name, typ, usage) in enumerate(fields):
            fd = ET.SubElement(rat, "FieldDefn", index=str(k))
            ET.SubElement(fd, "Name").text = name
            ET.SubElement(fd, "Type").text = str(typ)
            ET.SubElement(fd, "Usage").text = str(usage)
        rgb = self.rgb()
        for k, (i, n) in enumerate(sorted(zip(self.ids, self.names))):
            row = ET.SubElement(rat, "Row", index=str(k))
            for value in (i, n, *rgb[i], 255):
                ET.SubElement(row, "F").text = str(value)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode") + "\n"

    def qml(self) -> str:
        """QGIS layer style: a paletted renderer with one named entry per class, nodata transparent."""
        root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
        pipe = ET.SubElement(root, "pipe")
        ren = ET.SubElement(
            pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor=""
        )
        ET.SubElement(ren, "rasterTransparency")
        pal = ET.SubElement(ren, "colorPalette")
        for i, n, _c in sorted(zip(self.ids, self.names, self.colors)):
            r, g, b = self.rgb()[i]
            ET.SubElement(pal, "paletteEntry", value=str(i), color=f"#{r:02x}{g:02x}{b:02x}", alpha="255", label=n)
        ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
        ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
        ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
        ET.SubElement(root, "blendMode").text = "0"
        ET.indent(root)
        return (
            "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            + ET.tostring(root, encoding="unicode")
            + "\n"
        )

    def clr(self) -> str:
        """ArcGIS colour map: one ``value red green blue`` line per class."""
        return "".join(f"{i} {r} {g} {b}\n" for i, (r, g, b) in sorted(self.rgb().items()))


def sidecar_paths(map_path: str | Path) -> dict[str, Path]:
    """Where the sidecars of a class map live: ``{"aux": x.tif.aux.xml, "qml": x.qml, "clr": x.clr}``."""
    p = Path(map_path)
    return {"aux": p.with_name(p.name + ".aux.xml"), "qml": p.with_suffix(".qml"), "clr": p.with_suffix(".clr")}


def write_sidecars(map_path: str | Path, table: ClassTable) -> list[Path]:
    """Write the three sidecars of a class map (each atomically); returns their paths."""
    paths = sidecar_paths(map_path)
    write_text(paths["aux"], table.pam_xml())
    write_text(paths["qml"], table.qml())
    write_text(paths["clr"], table.clr())
    return list(paths.values())


def names_from_json(value: Any) -> dict[int, str]:
    """``{id: name}``, ``[{"id", "name"}]`` or a list of names (index = id) -> ``{id: name}``."""
    out: dict[int, str] = {}
    if isinstance(value, Mapping):
        out = {int(k): str(v) for k, v in value.items() if str(k).lstrip("-").isdigit()}
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, Mapping) and "id" in v and "name" in v:
                out[int(v["id"])] = str(v["name"])
            elif isinstance(v, str):
                out[i] = v
    return out


def read_pam_names(map_path: str | Path) -> dict[int, str]:
    """Class names from the map's ``.aux.xml``: the RAT's name column, else the category names."""
    aux = sidecar_paths(map_path)["aux"]
    try:
        band = ET.parse(aux).getroot().find("PAMRasterBand")
    except (OSError, ET.ParseError):
        return {}
    if band is None:
        return {}
    rat = band.find("GDALRasterAttributeTable")
    if rat is not None:
        fields = {fd.findtext("Usage"): int(fd.get("index", -1)) for fd in rat.findall("FieldDefn")}
        vi, ni = fields.get(str(_GFU_MINMAX)), fields.get(str(_GFU_NAME))
        if vi is not None and ni is not None:
            names = {}
            for row in rat.findall("Row"):
                f = [x.text or "" for x in row.findall("F")]
                if max(vi, ni) < len(f) and f[vi].lstrip("-").isdigit():
                    names[int(f[vi])] = f[ni]
            if names:
                return names
    cats = band.find("CategoryNames")
    if cats is None:
        return {}
    return {v: c.text for v, c in enumerate(cats.findall("Category")) if c.text}


def read_tag_names(map_path: str | Path) -> dict[int, str]:
    """Class names from the map's ``class_names`` (or ``classes``) tag, dataset or band 1."""
    import rasterio

    try:
        with rasterio.open(map_path) as src:
            tags = {**src.tags(), **src.tags(1)}
    except Exception:  # noqa: BLE001 - unreadable maps are reported by the caller when it opens them
        return {}
    for key in (NAMES_TAG, "classes"):
        if key in tags:
            try:
                names = names_from_json(json.loads(tags[key]))
            except json.JSONDecodeError:
                continue
            if names:
                return names
    return {}
