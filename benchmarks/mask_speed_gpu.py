"""Speed of the learned cloud mask's network on a GPU, through PyTorch; one JSON line.

cloudfree runs ukis-csmask's ONNX model with onnxruntime (``onnxruntime-gpu`` on CUDA). That wheel
(256 MB) cannot travel to this project's GPU host, so the same network — segmentation_models_pytorch's
U-Net with an efficientnet-b4 encoder, which is what the ONNX file was exported from (its initializer
names are smp's) — is rebuilt here with the ONNX weights, checked against onnxruntime on the REAL
bundled series, and exported as TorchScript for the GPU host:

    python benchmarks/mask_speed_gpu.py export --out .carry/mask/csmask6.pt      # here (needs [masks], onnx, smp)
    python benchmarks/mask_speed_gpu.py run --model .carry/mask/csmask6.pt        # on the GPU host (torch only)

``run`` times the windows of a 1024² block of 12 dates (stride 192: 36 windows of 256² per date)
in batches, bf16 autocast, with host→device copies included, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export(out: Path) -> dict:
    import onnx
    import onnxruntime as ort
    import segmentation_models_pytorch as smp
    import torch
    import ukis_csmask
    from onnx import numpy_helper

    import cloudfree
    from cloudfree.catalog import bundled_catalog

    onnx_path = Path(ukis_csmask.__file__).parent / "model_6b_l2a.onnx"
    stats = json.loads(onnx_path.with_suffix(".json").read_text())["data"]["dataset_statistics"]["img"]
    m = onnx.load(str(onnx_path))
    sd = {i.name.removeprefix("model."): torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    net = smp.Unet("efficientnet-b4", encoder_weights=None, in_channels=6, classes=3)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    unused = ("num_batches_tracked", "encoder._conv_head.", "encoder._bn1.", "encoder._fc.")  # not in the U-Net path
    assert not unexpected and all(any(u in k for u in unused) for k in missing), (missing[:3], unexpected[:3])
    net.eval()
    # agreement with onnxruntime on real windows (the bundled series, 6 bands)
    cube = cloudfree.load_cube(cloudfree.search(bundled_catalog(), "2019-07-01", "2019-10-31")).compute()
    x = cube["reflectance"].sel(band=["B02", "B03", "B04", "B08", "B11", "B12"]).values
    x = np.nan_to_num(np.pad(x, ((0, 0), (0, 0), (96, 96), (96, 96)), mode="symmetric"))
    x = ((x - np.asarray(stats[0])[:, None, None]) / np.asarray(stats[1])[:, None, None]).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    a = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i : i + 4]})[0] for i in range(0, len(x), 4)])
    with torch.no_grad():
        b = torch.cat([net(torch.from_numpy(x[i : i + 4])) for i in range(0, len(x), 4)]).numpy()
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    traced = torch.jit.trace(net, torch.from_numpy(x[:2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    traced.half().save(str(out))
    res = {"exported": str(out), "argmax_agreement_with_onnxruntime_real_windows": round(agree, 5),
           "max_abs_logit_diff": float(np.abs(a - b).max()), "windows": int(len(x))}
    print(json.dumps(res))
    return res


def run(model: Path, size: int = 1024, dates: int = 12, batch: int = 64, repeats: int = 5) -> dict:
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = torch.jit.load(str(model), map_location=dev).float().eval()
    stride, window = 192, 256
    n = -(-size // stride)
    windows = dates * n * n
    rng = np.random.default_rng(0)
    host = torch.from_numpy(rng.normal(0, 1, (windows, 6, window, window)).astype(np.float32))
    if dev == "cuda":
        host = host.pin_memory()

    def once() -> float:
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            for i in range(0, windows, batch):
                y = net(host[i : i + batch].to(dev, non_blocking=True))
                y.argmax(1).to(torch.uint8).cpu()
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()  # warm-up (cuDNN autotune)
    times = [once() for _ in range(repeats)]
    best = min(times)
    res = {"benchmark": "mask_speed", "network": "ukis-csmask 6-band L2A (smp U-Net efficientnet-b4) via TorchScript",
           "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch": torch.__version__,
           "precision": "bf16 autocast" if dev == "cuda" else "fp32", "block": f"{size}x{size}", "dates": dates,
           "windows": windows, "batch": batch, "seconds": round(best, 3), "seconds_all": [round(t, 3) for t in times],
           "output_mpx_per_s": round(size * size * dates / best / 1e6, 2),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
           "commit": os.environ.get("CLOUDFREE_COMMIT", "unknown")}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    export(a.out) if a.cmd == "export" else run(a.model, batch=a.batch)
