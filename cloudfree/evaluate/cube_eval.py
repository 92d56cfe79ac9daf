"""``cloudfree evaluate`` as library calls: the model against compositing on a cube store or on
SEN12MS-CR-TS, with the held-out protocol of :mod:`cloudfree.evaluate.protocol`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, InputError

__all__ = ["evaluation_model", "evaluate_cube", "evaluate_store"]


def evaluation_model(model: str | None, bands: tuple[str, ...] | None, device: str, *, echo=print):
    """The network to evaluate: ``None`` for ``model="none"`` or where the shipped model does not
    serve ``bands`` (said through ``echo``); a checkpoint that does not serve them is an error."""
    if model == "none":
        return None
    from ..models import default_weights, load_checkpoint, read_config
    from ..models.checkpoint import serves

    ckpt = model or default_weights()
    config = read_config(ckpt)[0]
    if bands and not serves(config, bands):
        if model:
            raise InputError(f"the model {ckpt} serves bands {', '.join(config['bands'])}; the evaluated bands are "
                             f"{', '.join(bands)} (choose --bands or --model none)")
        echo(f"the shipped model serves bands {', '.join(config['bands'])} only: evaluating the compositing methods")
        return None
    net, _ = load_checkpoint(ckpt, map_location=device)
    if config.get("band_aware"):
        from ..models.pixel import BoundBands

        net = BoundBands(net, bands or config["bands"])
    return net


def evaluate_cube(cube: str | Path, net, *, bands: tuple[str, ...], device: str, min_clear: float, max_dates: int,
                  window: int, progress=None):
    """Every window × target date of a cube store (targets at least ``min_clear`` clear): one
    window in memory at a time; returns the merged :class:`~cloudfree.evaluate.protocol.EvalResult`."""
    from ..cube.load import open_cube
    from ..training.fit import cube_series
    from .protocol import evaluate_series, merge_results

    times = open_cube(cube).time.values
    jobs = []
    for series in cube_series(cube, window=window, bands=bands):
        frac = series.clear.reshape(len(series.days), -1).mean(1)
        jobs += [(series, int(t)) for t in np.flatnonzero(frac >= min_clear)]
    if not jobs:
        raise InputError(f"no date is at least {min_clear:.0%} clear in any window of {cube}")
    results = []
    for k, (series, t) in enumerate(jobs):
        try:
            results.append(evaluate_series(series, [t], net, max_dates=max_dates, device=device, dates=times))
        except DataError:  # nothing could be hidden on this date
            pass
        if progress is not None:
            progress(k + 1, len(jobs))
    if not results:
        raise InputError(f"no target date of {cube} had pixels to hide under another date's clouds")
    return merge_results(results)


def evaluate_store(out: str | Path, *, cube: str | Path | None = None, sen12mscrts: str | Path | None = None,
                   model: str | None = None, bands: str | tuple[str, ...] | None = None, device: str = "cpu",
                   min_clear: float = 0.4, max_dates: int = 12, max_patches: int = 32, window: int = 1024,
                   progress=None, echo=print) -> dict:
    """Evaluate a cube store or SEN12MS-CR-TS's test split and write the report into ``out``
    (report.json, report.md, PNGs); returns the report's files. ``bands`` as the command line
    spells them (``"B02,B03"`` or a sequence); ``device`` may be ``auto``."""
    from ..bands import validate_bands
    from ..extras import TRAIN_EXTRA, require_torch
    from ..reconstruct.tiles import resolve_device

    require_torch("cloudfree evaluate (its metrics)", TRAIN_EXTRA)
    from .protocol import evaluate_examples_list, write_report

    bands, device = validate_bands(bands), resolve_device(device)
    if bool(cube) == bool(sen12mscrts):
        raise InputError("give --cube or --sen12mscrts")
    if cube:
        from ..cube.load import open_cube

        ds = open_cube(cube)
        have = [str(b) for b in ds.band.values]
        missing = [b for b in bands or () if b not in have]
        if missing:
            raise InputError(f"the cube {cube} has no band {', '.join(missing)}; it has {', '.join(have)}")
        bands = tuple(bands or have)
        net = evaluation_model(model, bands, device, echo=echo)
        res = evaluate_cube(cube, net, bands=bands, device=device, min_clear=min_clear, max_dates=max_dates,
                            window=window, progress=progress)
        from ..provenance import CubeProvenance

        synthetic = CubeProvenance.from_attrs(ds.attrs).synthetic
        return write_report(res, out, "cloudfree evaluation" + (" — SYNTHETIC data" if synthetic else ""),
                            synthetic=synthetic, bands=list(bands))
    net = evaluation_model(model, bands, device, echo=echo)
    res = evaluate_examples_list(sen12mscrts, net, max_patches=max_patches, n_inputs=max_dates - 1, device=device)
    return write_report(res, out, "cloudfree evaluation — SEN12MS-CR-TS test split")
