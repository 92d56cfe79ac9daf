#!/usr/bin/env bash
# The GPU host's figures for issue 12 in one device call (the host has torch but not this project's
# other dependencies, and no network): unpack the carried site-packages, write the full-tile
# SYNTHETIC catalog, then run benchmarks/pipeline.py on it. Results land in $OUT as JSON lines.
#
#   here:  pip install --target (for cp312, manylinux) the wheels it lacks, strip tests, then
#          tar cJf .carry/site.tar.xz -C <dir> site   (about 34 MB; .carry/ is git-ignored)
#   there: CLOUDFREE_COMMIT=<sha> bash benchmarks/device_session.sh [steps...]
# steps: full (CLI defaults on the full tile), area (x0.25 and x0.5 of its side: memory against
# area), median16 (run and --method median on x0.25: their ratio), chunk1024 (x0.25, x0.5 and the
# full tile at --chunk 1024, whose 8-block stripe, 8192 px, is narrower than the tile: memory once
# the area is wider than a stripe; the full tile is cut off after 240 s), wide (a 2-stripe-wide scene of 3
# block rows, 32784 x 6144 px, at CLI defaults over its first 1 and 2 stripes' width, 16384 and
# 32768 px: memory against the area's width once it is a stripe wide, the most that is ever in
# flight; its own catalog instead of the full tile's; EPSG:32633 throughout, as it crosses a zone), validate (the full tile
# with --no-validate, then with the default self-validation, on the same machine). Default: full area median16 chunk1024.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
tar xJf .carry/site.tar.xz -C /tmp || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import rasterio, odc.stac, zarr, distributed, torch; print('deps ok', rasterio.__version__, torch.__version__, torch.cuda.get_device_name(0))" || exit 1
CAT=/tmp/f/catalog
WIDE=/tmp/w/catalog
steps=${*:-full area median16 chunk1024}
if [ "$steps" = wide ]; then
  python3 benchmarks/make_catalog.py --size 32784 --rows 6144 --aoi-widths 16384,32768 --out $WIDE \
    | tee -a "$OUT/make_catalog_h200.jsonl" || exit 1
else
  python3 benchmarks/make_catalog.py --size 10980 --out $CAT | tee -a "$OUT/make_catalog_h200.jsonl" || exit 1
fi
X025=16.078124584412272,46.389792582562855,16.441412543292987,46.64229566281659
X05=16.078124584412272,46.137289502309116,16.804700502173702,46.64229566281659
for s in $steps; do
  case $s in
    full) python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median --append "$OUT/pipeline_h200.jsonl" \
            --label "full tile, CLI defaults" ;;
    validate) python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median --append "$OUT/pipeline_gpu.jsonl" \
            --label "full tile, CLI defaults without self-validation" --no-validate
          python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median --append "$OUT/pipeline_gpu.jsonl" \
            --label "full tile, CLI defaults (self-validation on)" ;;
    area) for b in $X025 $X05; do
            python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median --append "$OUT/pipeline_h200.jsonl" \
              --label "area against memory, bbox $b" --bbox $b; done ;;
    median16) python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --append "$OUT/pipeline_h200.jsonl" \
            --label "x0.25 of the tile's side: run and --method median" --bbox $X025 ;;
    chunk1024) for b in $X025 $X05; do
            python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median --append "$OUT/pipeline_h200.jsonl" \
              --label "chunk 1024: area against memory, bbox $b" --bbox $b --chunk 1024; done
          timeout 240 python3 benchmarks/pipeline.py --stac $CAT/items.json --out /tmp/b --skip-median \
            --append "$OUT/pipeline_h200.jsonl" --label "chunk 1024: full tile" --chunk 1024 ;;
    wide) for w in 16384 32768; do
            python3 benchmarks/pipeline.py --stac $WIDE/items.json --out /tmp/b --skip-median \
              --append "$OUT/pipeline_h200.jsonl" --label "width against memory: $w px x 6144 rows, CLI defaults" \
              --aoi $WIDE/aoi_$w.geojson --crs EPSG:32633 --yes; done ;;
  esac
  rm -rf /tmp/b
done
ls -la "$OUT"
