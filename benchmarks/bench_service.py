"""Load test of the running service: throughput and latency with and without adaptive batching.

Starts the service twice on loopback (``SEMQA_SERVICE_BATCHING=true`` then ``false``, all
else equal), sends the same bounded load to ``POST /v1/super_resolve`` each time (default
200 requests, 8 concurrent, 768×768 8-bit PNG LR inputs), and prints throughput, p50/p95
latency, failures and the mean adaptive batch size BentoML recorded.

The generator is ``--model`` (a ``models:/`` URI or a folder), default a small compact
generator written to a temporary folder so that the figures measure the service rather
than one network's speed.

Usage::

    .venv/bin/python benchmarks/bench_service.py [--requests 200] [--concurrency 8] [--size 768] [--model URI]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(size: int, n: int) -> list[bytes]:
    """``n`` different smooth LR images with bright blobs (content does not change the cost)."""
    from scipy.ndimage import gaussian_filter

    from semqa.io.images import encode_image

    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        field = gaussian_filter(rng.random((size, size)), 3)
        image = np.clip(0.2 + 2.5 * (field - field.mean()), 0, 1)
        out.append(encode_image(image, "png"))
    return out


def _tiny_model(folder: Path) -> str:
    import torch

    from semqa.sr.archs import GeneratorConfig, build_generator
    from semqa.sr.inference import save_generator_files

    torch.manual_seed(0)
    config = GeneratorConfig(arch="srvgg", num_feat=16, num_conv=4, scale=2)
    save_generator_files(build_generator(config), config, folder)
    return str(folder)


def _mean_batch_size(metrics: str) -> float | None:
    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*method_name=\"upscale\"[^}}]*\}} (\S+)$", metrics, re.M))

    count = total("bentoml_service_adaptive_batch_size_count")
    return total("bentoml_service_adaptive_batch_size_sum") / count if count else None


def run_load(url: str, inputs: list[bytes], requests: int, concurrency: int) -> dict:
    """Send ``requests`` super-resolution calls, ``concurrency`` at a time; returns the figures."""
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def one(i: int) -> tuple[float, bool]:
        t0 = time.perf_counter()
        try:
            r = httpx.post(f"{url}/v1/super_resolve", headers=headers,
                           files={"image": (f"lr-{i}.png", inputs[i % len(inputs)])}, timeout=600)
            ok = r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - t0, ok

    with ThreadPoolExecutor(concurrency) as pool:  # warm-up: one round, not counted
        list(pool.map(one, range(concurrency)))
        t0 = time.perf_counter()
        results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
    latencies = sorted(t for t, _ in results)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": requests,
        "failures": sum(not ok for _, ok in results),
        "wall_s": wall,
        "throughput_rps": requests / wall,
        "p50_s": q[49],
        "p95_s": q[94],
    }


def bench(batching: bool, model_uri: str, inputs: list[bytes], requests: int, concurrency: int, workdir: Path) -> dict:
    import bentoml

    from service.client import SemqaClient

    os.environ.update(
        SEMQA_MODEL_URI=model_uri,
        SEMQA_API_TOKEN=TOKEN,
        SEMQA_SERVICE_BATCHING=str(batching).lower(),
        SEMQA_SERVICE_TILE_SIZE="512",
        SEMQA_SERVICE_TILE_BATCH="16",
        BENTOML_HOME=str(workdir / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = bentoml.serve("service.service:Semqa", host="127.0.0.1", port=port, working_dir=str(ROOT))
    try:
        with SemqaClient(url, token=TOKEN) as client:
            client.wait_ready(300)
        figures = run_load(url, inputs, requests, concurrency)
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
        figures["mean_batch_size"] = _mean_batch_size(metrics)
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=768, help="side of the square LR inputs, pixels")
    parser.add_argument("--model", help="generator URI or folder (default: a small compact generator)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="semqa-bench-") as tmp:
        workdir = Path(tmp)
        model = args.model or _tiny_model(workdir / "model")
        inputs = _inputs(args.size, 8)
        rows = {}
        for batching in (True, False):
            rows["batched" if batching else "unbatched"] = bench(
                batching, model, inputs, args.requests, args.concurrency, workdir
            )
    print(f"\nsuper_resolve load test: {args.requests} requests, {args.concurrency} concurrent, "
          f"{args.size}×{args.size} LR PNG, model {args.model or 'srvgg 16×4 scale 2 (temporary)'}, loopback")
    print(f"{'mode':<10} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'failures':>8} {'mean batch':>10} {'wall s':>7}")
    for mode, f in rows.items():
        mb = "-" if f["mean_batch_size"] is None else f"{f['mean_batch_size']:.2f}"
        print(f"{mode:<10} {f['throughput_rps']:>7.2f} {f['p50_s']:>7.2f} {f['p95_s']:>7.2f} {f['failures']:>8d} "
              f"{mb:>10} {f['wall_s']:>7.1f}")
    gain = rows["batched"]["throughput_rps"] / rows["unbatched"]["throughput_rps"]
    print(f"adaptive batching throughput gain: ×{gain:.2f}")
    if any(f["failures"] for f in rows.values()):
        raise SystemExit("failures under load")


if __name__ == "__main__":
    main()
