"""Large scenes: peak memory and time of `geoassist ask` by raster size, and counting tiled vs downscaled.

Part 1 — memory and time. Builds GeoTIFFs of N×N pixels (default 1k, 4k, 10k, 20k
and 40k), 3-band uint8, JPEG-compressed in 512-pixel blocks (a 40k² scene holds
4.8 GB of pixels but takes well under 1 GB on disk), written by GeoSynth's tiled mode
(``geoassist.synth.large.generate_large_scene``: independent 1024² scenes of varied
classes at 0.5 m, window by window, so that no step ever holds the raster; ``--pool K``
draws the pieces from K scenes instead, faster). Each raster is
measured twice: as written (no overviews: the overview is a decimated read of the
whole file) and after GDAL builds internal overviews (as in a COG). Every
measurement is one `geoassist ask` process with the default model (``geoassist-mini``,
``--model`` to change; the question is "cars", task detect); its peak
resident memory and CPU time (user + system) come from ``wait4``, beside its wall-clock
time (CPU time is the figure to compare on a machine shared with other jobs). The
baseline, measured in the same run, is the same command on the smallest raster;
ratios are printed against it.

Part 2 — counting. A GeoSynth tiled scene of ``--count-size`` pixels (parking lots,
residential, industrial) is written with its ``objects`` band (``labels=True``: each
object's class code, each instance shrunk by a pixel so that neighbours stay apart). A
stand-in detector replaces generation: it counts the blobs of the small-vehicle code
in the pixels the encoder receives (that band, as a gray composite); the truth is the
annotation's small-vehicle count. The same question is answered three ways: tiled
with enough tiles to read the whole scene, tiled with the default budget (64), and
downscaled to the encoder's input (``max_tiles=0``). Counting accuracy is
``1 - |predicted - true| / true`` against the GeoSynth truth; the detector's own
ceiling (blobs counted on the full-resolution band) is printed too.

    python bench/bench_large_scene.py --out /tmp/geoassist-bench
    python bench/bench_large_scene.py --sizes 1000,4000 --skip-count     # quick

Rasters are written under ``--out`` (never into the repository) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------ raster building


def write_scene(path: Path, side: int, args) -> None:
    """An N×N GeoSynth tiled scene (JPEG, 512-px blocks), written window by window, and its truth."""
    from geoassist.synth.large import generate_large_scene

    generate_large_scene(path, side, seed=0, georef=True, compress="jpeg", pool=args.pool,
                         workers=args.workers, progress=False)  # fmt: skip


# ------------------------------------------------------------------ measuring


class _Child:
    """Popen whose resource usage is collected with wait4 (Popen.wait would reap it first)."""

    def __init__(self, cmd: list[str]):
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> tuple[float, float, float, str, str, int]:
        """Wall seconds, CPU seconds (user + system), peak RSS (GB), stdout, stderr, exit code."""
        out = self.proc.stdout.read()
        err = self.proc.stderr.read()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - self.start
        cpu = usage.ru_utime + usage.ru_stime
        return wall, cpu, usage.ru_maxrss / 1024**2, out, err, self.proc.returncode


def run_ask(path: Path, model: str, max_tiles: int | None, tokens: int) -> dict:
    cmd = [sys.executable, "-m", "geoassist.cli", "ask", str(path), "cars", "--task", "detect",
           "--model", model, "--max-new-tokens", str(tokens), "--json", "--device", "cpu"]  # fmt: skip
    if max_tiles is not None:
        cmd += ["--max-tiles", str(max_tiles)]
    seconds, cpu, peak_gb, out, err, code = _Child(cmd).result()
    if code:
        raise RuntimeError(f"geoassist ask failed on {path}:\n{err[-3000:]}")
    coverage = json.loads(out).get("coverage") or {}
    return {"seconds": seconds, "cpu": cpu, "peak_gb": peak_gb,
            "tiles_read": coverage.get("tiles_read", 1),
            "tiles_total": coverage.get("tiles_total", 1)}  # fmt: skip


def part_memory_time(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")]
    for side in sizes:
        path = out / f"scene_{side}.tif"
        ov_path = out / f"scene_{side}.ovr-built"
        if not path.exists():
            t0 = time.perf_counter()
            write_scene(path, side, args)
            print(f"wrote {path.name}: {side}×{side}×3 ({side * side * 3 / 1e9:.3g} GB of pixels) "
                  f"in {time.perf_counter() - t0:.0f} s, {path.stat().st_size / 1e6:.0f} MB on disk", flush=True)  # fmt: skip
        if not ov_path.exists() and not args.overviews_only:
            r = run_ask(path, args.model, None, args.tokens)
            rows.append({"side": side, "overviews": False, **r})
            print(_row(rows[-1]), flush=True)
        if not ov_path.exists():
            from geoassist.synth.large import build_overviews

            t0 = time.perf_counter()
            build_overviews(path)
            ov_path.touch()
            print(f"built overviews of {path.name} in {time.perf_counter() - t0:.0f} s "
                  f"({path.stat().st_size / 1e6:.0f} MB)", flush=True)  # fmt: skip
        r = run_ask(path, args.model, None, args.tokens)
        rows.append({"side": side, "overviews": True, **r})
        print(_row(rows[-1]), flush=True)
    base = next(r for r in rows if r["side"] == sizes[0] and r["overviews"])
    print(f"\nbaseline: {sizes[0]}² with overviews: {base['cpu']:.1f} CPU s, {base['peak_gb']:.2f} GB; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print("| raster | pixels (GB) | overviews | tiles read / total | peak RSS (GB) | × base "
          "| CPU (s) | × base | wall (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']:,}² | {r['side'] ** 2 * 3 / 1e9:.3g} | {'yes' if r['overviews'] else 'no'} "
              f"| {r['tiles_read']} / {r['tiles_total']:,} | {r['peak_gb']:.2f} "
              f"| {r['peak_gb'] / base['peak_gb']:.2f} | {r['cpu']:.1f} | {r['cpu'] / base['cpu']:.2f} "
              f"| {r['seconds']:.1f} |")  # fmt: skip
    return rows


def _row(r: dict) -> str:
    return (f"{r['side']}² overviews={r['overviews']}: {r['cpu']:.1f} CPU s ({r['seconds']:.1f} s wall), "
            f"peak {r['peak_gb']:.2f} GB, {r['tiles_read']}/{r['tiles_total']} tiles")  # fmt: skip


# ------------------------------------------------------------------ counting


COUNT_CLASSES = ["parking_lot", "dense_residential", "industrial"]


def counting_scene(path: Path, side: int, target: str = "small_vehicle") -> tuple[int, int, int]:
    """A GeoSynth tiled scene with its ``objects`` band; (true count, the target's code, full-res blob count)."""
    import rasterio
    from scipy import ndimage

    from geoassist.synth.large import generate_large_scene
    from geoassist.synth.palette import SEM

    result = generate_large_scene(path, side, seed=5, georef=True, compress="deflate", labels=True,
                                  classes=COUNT_CLASSES, progress=False)  # fmt: skip
    code = SEM[target]
    with rasterio.open(path) as ds:  # one band of a few thousand pixels a side: read whole
        band = ds.read(4)
    return result.counts.get(target, 0), code, ndimage.label(band == code)[1]


def blob_detector(model, code: int):
    """A stand-in for generation: blobs of one class code in each encoder input, in the answer grammar."""
    import torch
    from scipy import ndimage

    from geoassist import formats

    mean = torch.tensor(model.config.preprocess.mean).view(3, 1, 1)
    std = torch.tensor(model.config.preprocess.std).view(3, 1, 1)

    def generate(input_ids, attention_mask=None, pixel_values=None, **kwargs):
        rows = []
        has_image = (input_ids == model.image_token_id).any(dim=1).tolist()
        k = 0
        for with_image in has_image:
            text = "none"
            if with_image:
                gray = (pixel_values[k].cpu() * std + mean).mean(0).numpy()
                k += 1
                labels, _ = ndimage.label(np.abs(gray * 255 - code) < 0.5)
                boxes = [
                    (s[1].start, s[0].start, s[1].stop, s[0].stop)
                    for s in ndimage.find_objects(labels)
                ]
                if boxes:
                    size = (gray.shape[1], gray.shape[0])
                    text = formats.format_objects([{"label": "car", "box": b} for b in boxes], size)
            rows.append(
                model.tokenizer(text, add_special_tokens=False).input_ids + [model.end_token_id]
            )
        return rows

    return generate


def part_counting(args) -> None:
    from geoassist import Assistant

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"count_{args.count_size}.tif"
    meta = out / f"count_{args.count_size}.json"
    if not path.exists() or not meta.exists():
        true, code, ceiling = counting_scene(path, args.count_size)
        meta.write_text(json.dumps({"true": true, "code": code, "ceiling": ceiling}))
    info = json.loads(meta.read_text())
    true, code, ceiling = info["true"], info["code"], info["ceiling"]
    assistant = Assistant.from_pretrained(args.model, device="cpu")
    assistant.model.generate = blob_detector(assistant.model, code)
    size = assistant.config.preprocess.image_size
    print(f"\ncounting small vehicles on a {args.count_size}² GeoSynth mosaic (0.5 m, encoder input {size} px): "
          f"{true} true; the stand-in detector finds {ceiling} blobs at full resolution")  # fmt: skip
    print("| path | tiles read / total | counted | accuracy | time (s) |")
    print("|---|---|---|---|---|")
    for name, max_tiles in (("tiled, whole scene", 100_000), ("tiled, default budget", None),
                            ("downscale only", 0)):  # fmt: skip
        t0 = time.perf_counter()
        answer = assistant.ask(path, "How many cars are there?", task="vqa", bands=["objects"],
                               max_tiles=max_tiles, max_new_tokens=8)  # fmt: skip
        seconds = time.perf_counter() - t0
        counted = int(answer.text) if answer.text.isdigit() else len(answer.boxes)
        accuracy = max(0.0, 1 - abs(counted - true) / true)
        cov = answer.coverage
        print(f"| {name} | {cov['tiles_read']} / {cov['tiles_total']} | {counted} | {accuracy:.1%} | {seconds:.1f} |",
              flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default="/tmp/geoassist-bench", help="where rasters are written (not the repo)"
    )
    ap.add_argument("--sizes", default="1000,4000,10000,20000,40000")
    ap.add_argument("--model", default="geoassist-mini", help="the default (shipped) model")
    ap.add_argument("--tokens", type=int, default=16, help="max new tokens per answer")
    ap.add_argument(
        "--pool", type=int, default=0,
        help="draw the 1024² pieces from this many GeoSynth scenes (0: every piece its own scene)",
    )  # fmt: skip
    ap.add_argument("--workers", type=int, default=1, help="processes generating the scenes")
    ap.add_argument("--overviews-only", action="store_true", help="skip the runs without overviews")
    ap.add_argument("--count-size", type=int, default=4096)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-count", action="store_true")
    args = ap.parse_args()
    if not args.skip_memory:
        part_memory_time(args)
    if not args.skip_count:
        part_counting(args)


if __name__ == "__main__":
    main()
