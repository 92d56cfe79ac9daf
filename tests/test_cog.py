"""COGs assembled from tiles compressed per region: what GDAL reads back, the layout, resumption."""

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from cloudfree.outputs.cog import CogPlan, to_dn

META = {"crs": "EPSG:32633", "transform": Affine(10, 0, 600000, 0, -10, 5000000),
        "descriptions": ["B02", "B03", "B04"], "tags": {"cloudfree_fingerprint": "abc", "period": "2024-06"}}


def _image(ny: int, nx: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    refl = (0.02 + 0.4 * rng.random((3, ny, nx))).astype(np.float32)
    refl[:, 100:180, 200:400] = np.nan  # no data in any band
    refl[1, 500:520, :] = np.nan  # one band only
    return refl


def _means(refl: np.ndarray, f: int) -> np.ndarray:
    nb, ny, nx = refl.shape
    r = np.pad(refl, ((0, 0), (0, -ny % f), (0, -nx % f)), constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: nodata
        return np.nanmean(r.reshape(nb, r.shape[1] // f, f, r.shape[2] // f, f), axis=(2, 4))


@pytest.mark.parametrize("chunk", [256, 300, 512, 2048])
def test_cog_from_region_tiles_reads_back_as_gdal_reads(tmp_path, chunk):
    """Full resolution is exactly the DN of the reflectance; each overview level is the mean of the
    valid full-resolution pixels under it (within 1 DN), whether regions are tile-aligned (256,
    512), not (300), or one region is the whole image (2048); georeferencing, scale, nodata, band names and tags as GDAL writes them."""
    ny, nx = 1000, 1300
    refl = _image(ny, nx)
    plan = CogPlan.for_image(tmp_path / "a.tif", ny, nx, 3, chunk, chunk, "abc")
    plan.prepare()
    for y0, x0 in plan.regions()[::2]:  # half during the "run", the rest by finish()
        plan.region(y0, x0, refl[:, y0 : y0 + chunk, x0 : x0 + chunk])
    plan.finish(lambda y0, x0: refl[:, y0 : y0 + chunk, x0 : x0 + chunk], META, threads=2)
    assert not plan.parts.exists()
    with rasterio.open(plan.path) as src:
        assert (src.crs.to_epsg(), src.transform, src.nodata) == (32633, META["transform"], 0)
        assert src.scales == (1e-4,) * 3 and src.offsets == (0.0,) * 3 and src.descriptions == ("B02", "B03", "B04")
        assert src.tags()["period"] == "2024-06" and src.tags()["cloudfree_fingerprint"] == "abc"
        assert src.block_shapes[0] == (256, 256) and src.profile["compress"] == "deflate"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        np.testing.assert_array_equal(src.read(), to_dn(refl))
        assert src.overviews(1) == [2, 4, 8, 16]
        for f in src.overviews(1):
            got = src.read(out_shape=(3, -(-ny // f), -(-nx // f))).astype(int)
            assert np.abs(got - to_dn(_means(refl, f))).max() <= 1


def test_cog_layout_has_every_ifd_first_and_the_coarsest_tiles_next(tmp_path):
    from tifffile import TiffFile

    refl = _image(700, 900)
    plan = CogPlan.for_image(tmp_path / "a.tif", 700, 900, 3, 256, 256)
    plan.prepare()
    plan.finish(lambda y0, x0: refl[:, y0 : y0 + 256, x0 : x0 + 256], META)
    with TiffFile(plan.path) as tf:
        pages = list(tf.pages)
        first_tile = min(min(o for o in p.dataoffsets if o) for p in pages)
        assert max(p.offset for p in pages) < first_tile  # a reader's first request holds every IFD
        starts = [min(o for o in p.dataoffsets if o) for p in pages]
        assert starts == sorted(starts, reverse=True)  # coarsest overview first, full resolution last
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(plan.path) == (True, [], [])  # valid, no errors, no warnings


def test_parts_of_an_interrupted_run_are_reused_and_of_another_request_discarded(tmp_path):
    refl = _image(600, 600)
    plan = CogPlan.for_image(tmp_path / "a.tif", 600, 600, 3, 256, 256, "one")
    plan.prepare()
    plan.region(0, 0, refl[:, :256, :256])
    assert plan.missing() == [r for r in plan.regions() if r != (0, 0)]
    plan.prepare()  # the same request, resumed: the finished region stays
    assert (0, 0) not in plan.missing()
    other = CogPlan.for_image(tmp_path / "a.tif", 600, 600, 3, 256, 256, "two")
    other.prepare()  # another request at the same path: nothing of the first is reused
    assert other.missing() == other.regions()
    plan.prepare(fresh=True)
    assert plan.missing() == plan.regions()


def test_a_tile_never_written_is_an_error_not_a_hole(tmp_path):
    refl = _image(600, 600)
    plan = CogPlan.for_image(tmp_path / "a.tif", 600, 600, 3, 256, 256)
    plan.prepare()
    plan.region(0, 0, refl[:, :256, :256])
    (plan.parts / "r0_0.L0.bin").write_bytes(b"")
    (plan.parts / "r0_0.json").write_text('{"0": [], "1": []}')  # a region whose tiles went missing
    with pytest.raises(RuntimeError, match="never written"):
        plan.finish(lambda y0, x0: refl[:, y0 : y0 + 256, x0 : x0 + 256], META)
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "a.tif.part").exists()


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux /proc/self/maps")
def test_shared_sums_are_never_mapped_into_the_process(tmp_path, monkeypatch):
    """The shared level's grid grows with the area: mapped, its pages counted in the run's RSS
    (a 4× area's grid added 0.12 GiB at the end of a 2-core run). It is read and written as a file."""
    refl = _image(1000, 1300)
    plan = CogPlan.for_image(tmp_path / "a.tif", 1000, 1300, 3, 256, 256)
    assert plan.shared <= plan.levels  # the image has a shared level to sum
    plan.prepare()
    seen = []
    write_tiles = CogPlan._write_tiles

    def spy(self, *a, **kw):  # called while the shared levels are read, a tile row at a time
        seen.append(open("/proc/self/maps").read())
        return write_tiles(self, *a, **kw)

    monkeypatch.setattr(CogPlan, "_write_tiles", spy)
    for y0, x0 in plan.regions():
        plan.region(y0, x0, refl[:, y0 : y0 + 256, x0 : x0 + 256])
        seen.append(open("/proc/self/maps").read())
    plan.finish(lambda y0, x0: refl[:, y0 : y0 + 256, x0 : x0 + 256], META, threads=1)
    assert len(seen) > len(plan.regions())  # the shared levels were written through the spy too
    assert not any(str(plan.parts) in maps for maps in seen)
    with rasterio.open(plan.path) as src:  # and the overviews from the summed grid are still the means
        for f in src.overviews(1):
            got = src.read(out_shape=(3, -(-1000 // f), -(-1300 // f))).astype(int)
            assert np.abs(got - to_dn(_means(refl, f))).max() <= 1


def test_a_tile_is_a_deflate_stream_any_reader_decodes_with_isal_or_zlib(monkeypatch):
    """ISA-L writes the tiles where installed, the standard library where not: both are zlib
    streams (TIFF's Adobe deflate) that decode to the same predicted values."""
    import zlib

    from cloudfree.outputs import cog

    rng = np.random.default_rng(0)
    tile = rng.integers(1, 9000, (200, 256, 3)).astype(np.uint16)
    fast = cog._encode(tile)
    monkeypatch.setattr(cog, "_deflate", zlib)
    monkeypatch.setattr(cog, "DEFLATE_LEVEL", 1)
    plain = cog._encode(tile)
    got = [np.frombuffer(zlib.decompress(b), "<u2").reshape(cog.TILE, cog.TILE, 3) for b in (fast, plain)]
    np.testing.assert_array_equal(got[0], got[1])
    undone = np.cumsum(got[0].astype(np.uint32), axis=1, dtype=np.uint32) % 65536  # predictor 2 reversed
    np.testing.assert_array_equal(undone[:200], tile)
