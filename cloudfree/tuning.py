"""Tuning constants: the sizes and counts that bound memory and set the pace of a run.

The bottom layer: every module that plans or runs blocks reads them from here, so the memory plan
(:mod:`cloudfree.cluster`) and the code it plans for (:mod:`cloudfree.reconstruct`) agree without
importing each other. What each value was measured to cost is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

__all__ = ["BASE_BYTES", "BYTES_PER_PIXEL_VALUE", "READ_BYTES_PER_VALUE", "MAX_READ_AHEAD", "PATCH_BYTES",
           "CHUNKS", "STRIPE", "PANEL_ROWS", "GPU_PIXELS_PER_BATCH", "GPU_BLOCKS_AT_ONCE", "PINNED_BUFFERS",
           "TRIM_EVERY", "IDLE_AFTER"]

# --- memory plan (cloudfree.cluster) -------------------------------------------------------------
BASE_BYTES = 800 * 2**20
"""What one process holds before any block: Python, torch, GDAL, Dask, the model."""
BYTES_PER_PIXEL_VALUE = 8
"""Bytes per (date, band, pixel) of a block in flight: the float32 block, its rechunked copy, the
model's input batch and the output, with a 2× margin over what ``benchmarks/memory.py`` measures."""
READ_BYTES_PER_VALUE = 2
"""Bytes per (date, band, pixel) of a streamed read: the stored uint16 DN as read (SCL counted as a band)."""
MAX_READ_AHEAD = 4
"""Blocks whose reads may start ahead of the model beyond the stripe's row (the streamed path): more
read-ahead costs memory and, on a GPU host, time (the GPU host's runs in ``benchmarks/RESULTS.md``)."""
PATCH_BYTES = 300 * 2**20
"""Activations per 256² patch of the U-Net in one forward pass."""
CHUNKS = (2048, 1536, 1024, 768, 512, 256, 128)
"""Block sizes the plan picks from: multiples of the COG's 256-px tiles, so every region compresses
its own full-resolution tiles rather than sending them through the shared overview sums."""

# --- streamed order (cloudfree.reconstruct.model_reads) ---------------------------------------------
STRIPE = 8
"""Block columns per stripe of the streamed order: reads in flight stay those of about a stripe's
row of blocks plus the read-ahead, however wide the area (a single tile at 2048 px is one stripe)."""
PANEL_ROWS = 32
"""Block rows per panel: a panel (a stripe's run of rows) is a graph of its own, which reads the
blocks around it that its margins need itself. Its tasks are made only when it is culled, so the
driver and the scheduler hold one panel's tasks, not the area's. Panels run one after another; the
rows read twice cost 2 / PANEL_ROWS more reads."""

# --- GPU (cloudfree.reconstruct.tiles) -----------------------------------------------------------
GPU_PIXELS_PER_BATCH = 1 << 19
"""Pixels per call of a per-pixel model on a GPU (the compiled graph's one input length)."""
GPU_BLOCKS_AT_ONCE = 2
"""Blocks resident on one GPU at a time (one uploading while one computes): what bounds GPU memory
when many CPU threads feed one device."""
PINNED_BUFFERS = GPU_BLOCKS_AT_ONCE + 2
"""Pinned host buffers per device that blocks are staged in (two filling while two are on the GPU):
pinned memory stays bounded whatever the number of threads."""

# --- heap trimming (cloudfree.heap) --------------------------------------------------------------
TRIM_EVERY = 0.25
"""Seconds between trims while blocks' tasks run (a task's own buffers are freed mid-task too)."""
IDLE_AFTER = 10.0
"""The trimming thread stops this many seconds after the last task's trim."""
