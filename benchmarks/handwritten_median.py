"""What a user of the field writes instead of cloudfree: the median composite by hand, timed.

``odc.stac.load`` (chunks of 2048 px, ``groupby="solar_day"``), the SCL mask (0, 1, 3, 8, 9, 10
unusable), the reflectance decode of ``raster:bands``, ``.median("time")`` on Dask's threaded
scheduler, one COG with odc-geo's ``write_cog``. Prints one JSON line (wall time, peak RSS of the
process, output size); run it in the same call as every speed figure it is compared with.

    python benchmarks/handwritten_median.py --stac bench-out/catalog/items.json --out /tmp/hand.tif
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stac", required=True, help="an ItemCollection file (items.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--bands", default="B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12")
    ap.add_argument("--bbox", default=None, help="west,south,east,north (default: every item's extent)")
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--label", default="")
    ap.add_argument("--append")
    a = ap.parse_args()

    import dask
    import numpy as np
    import odc.geo.xr  # noqa: F401
    import odc.stac
    import pystac

    t0 = time.perf_counter()
    items = list(pystac.ItemCollection.from_file(a.stac))
    bands = a.bands.split(",")
    kw = {"bbox": [float(v) for v in a.bbox.split(",")]} if a.bbox else {}
    ds = odc.stac.load(items, bands=[*bands, "SCL"], chunks={"x": a.chunk, "y": a.chunk}, groupby="solar_day",
                       resolution=10, **kw)
    clear = ~ds["SCL"].isin([0, 1, 3, 8, 9, 10])
    rb = items[0].assets[bands[0]].extra_fields.get("raster:bands", [{}])[0]
    scale, offset = rb.get("scale", 1e-4), rb.get("offset", 0.0)
    refl = ds[bands].to_array("band")
    refl = (refl.where((refl != 0) & clear) * np.float32(scale) + np.float32(offset)).astype("float32")
    with dask.config.set(scheduler="threads"):
        med = refl.median("time")
        med.odc.write_cog(a.out, overwrite=True)
    wall = time.perf_counter() - t0
    line = {"benchmark": "handwritten_median", "label": a.label, "wall_s": round(wall, 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "output_mpx": round(med.sizes["x"] * med.sizes["y"] / 1e6, 2), "bands": len(bands),
            "dates": int(ds.sizes["time"]), "chunk": a.chunk, "data": "SYNTHETIC (benchmarks/make_catalog.py)"
            if any(it.properties.get("cloudfree:synthetic") for it in items) else "REAL",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
            "commit": _commit()}
    print(json.dumps(line), flush=True)
    if a.append:
        with open(a.append, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
