"""Load tests of the running service.

Default: throughput and latency with and without adaptive batching. Starts the service
twice on loopback (``SEMQA_SERVICE_BATCHING=true`` then ``false``, all else equal), sends
the same bounded load to ``POST /v1/super_resolve`` each time (default 200 requests, 8
concurrent, 768×768 8-bit PNG LR inputs), and prints throughput, p50/p95 latency, failures
and the mean adaptive batch size BentoML recorded.

``--mixed``: the service under mixed load with super-resolution (default 200 requests, 16
concurrent), cycling ``/v1/analyze`` with ``sr=true`` (one image), ``/v1/super_resolve`` and
``/v1/compare`` with ``sr=true`` (2 lots × 1 image per product), on generated 160×160 SEM-like LR
scans (:func:`semqa.synth.scenes.render_pair`). The baseline in the same run is each route
called alone (one at a time, 3 calls each): the table gives per route the requests,
failures, p50/p95 under load and the ratio of loaded to unloaded p50. Every failure is
printed with its status and error; any failure makes the exit status non-zero.

The generator is ``--model`` (a ``models:/`` URI or a folder), default a small compact
generator written to a temporary folder so that the figures measure the service rather
than one network's speed.

Usage::

    .venv/bin/python benchmarks/bench_service.py [--requests 200] [--concurrency 8] [--size 768] [--model URI]
    .venv/bin/python benchmarks/bench_service.py --mixed [--requests 200] [--concurrency 16] [--model URI]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from service.launch import running_service

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
    from semqa.components import save_network

    torch.manual_seed(0)
    config = GeneratorConfig(arch="srvgg", num_feat=16, num_conv=4, scale=2)
    save_network(build_generator(config), config, folder)
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


def _serve_env(batching: bool, model_uri: str, workdir: Path) -> None:
    os.environ.update(
        SEMQA_MODEL_URI=model_uri,
        SEMQA_API_TOKEN=TOKEN,
        SEMQA_SERVICE_BATCHING=str(batching).lower(),
        SEMQA_SERVICE_TILE_SIZE="512",
        SEMQA_SERVICE_TILE_BATCH="16",
        BENTOML_HOME=str(workdir / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
    )


def bench(batching: bool, model_uri: str, inputs: list[bytes], requests: int, concurrency: int, workdir: Path) -> dict:
    _serve_env(batching, model_uri, workdir)
    with running_service(_free_port(), log_path=workdir / f"service-{batching}.log", ready_timeout_s=300) as url:
        figures = run_load(url, inputs, requests, concurrency)
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
        figures["mean_batch_size"] = _mean_batch_size(metrics)
        return figures


# --- mixed routes -------------------------------------------------------------------------

#: µm per pixel of the generated LR scans (SynthConfig's HR 0.1 µm × its ×4 degradation).
_LR_PX = 0.4
_ROUTES = ("analyze", "super_resolve", "compare")


def _scans(n: int) -> list[bytes]:
    """``n`` generated LR SEM scans (160×160, 16-bit TIFF with their pixel size)."""
    from semqa.io.images import encode_image
    from semqa.synth.scenes import SynthConfig, render_pair

    out = []
    for seed in range(n):
        _, lr, _ = render_pair(SynthConfig(size_px=640), np.random.default_rng(100 + seed))
        out.append(encode_image(lr, "tiff", bit_depth=16, pixel_size_um=_LR_PX))
    return out


def _mixed_call(url: str, route: str, scans: list[bytes], i: int) -> tuple[str, float, str | None]:
    """One call of ``route``; returns (route, seconds, None or what failed)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    a, b = scans[i % len(scans)], scans[(i + 1) % len(scans)]
    if route == "analyze":
        files, data = [("images", ("scan.tif", a))], {"sr": "true"}
    elif route == "super_resolve":
        files, data = [("image", ("scan.tif", a))], {}
    else:
        files = [("reference", ("l1/a.tif", a)), ("reference", ("l2/b.tif", b)),
                 ("test", ("l1/b.tif", b)), ("test", ("l2/a.tif", a))]
        data = {"sr": "true"}
    t0 = time.perf_counter()
    try:
        r = httpx.post(f"{url}/v1/{route}", headers=headers, files=files, data=data, timeout=600)
        failure = None if r.status_code == 200 else f"{r.status_code} {r.text[:160]}"
    except httpx.HTTPError as exc:
        failure = f"{type(exc).__name__}: {exc}"
    return route, time.perf_counter() - t0, failure


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return q[49], q[94]


def bench_mixed(model_uri: str, requests: int, concurrency: int, workdir: Path) -> bool:
    """Serial baseline then the mixed load on one (batching) server; prints the table, returns success."""
    scans = _scans(8)
    _serve_env(True, model_uri, workdir)
    with running_service(_free_port(), log_path=workdir / "service-mixed.log", ready_timeout_s=300) as url:
        alone = [_mixed_call(url, route, scans, k) for route in _ROUTES for k in range(3)]
        plan = [(_ROUTES[i % len(_ROUTES)], i) for i in range(requests)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            loaded = list(pool.map(lambda job: _mixed_call(url, job[0], scans, job[1]), plan))
        wall = time.perf_counter() - t0
    failures = [(route, f) for route, _, f in [*alone, *loaded] if f is not None]
    print(f"\nmixed load test: {requests} requests, {concurrency} concurrent, routes cycled {'/'.join(_ROUTES)} "
          f"(analyze and compare with sr=true), 160×160 LR 16-bit TIFF scans, model "
          f"{model_uri if model_uri.startswith('models:') else 'srvgg 16×4 scale 2 (temporary)'}, loopback; "
          f"baseline: each route alone, 3 calls")
    print(f"{'route':<14} {'requests':>8} {'failures':>8} {'p50 s':>7} {'p95 s':>7} {'alone p50 s':>11} {'p50 ratio':>9}")
    for route in (*_ROUTES, "all"):
        times = [t for r, t, f in loaded if route in (r, "all")]
        fails = sum(1 for r, _, f in loaded if route in (r, "all") and f is not None)
        base = [t for r, t, _ in alone if route in (r, "all")]
        p50, p95 = _quantiles(times)
        b50 = statistics.median(base)
        print(f"{route:<14} {len(times):>8d} {fails:>8d} {p50:>7.2f} {p95:>7.2f} {b50:>11.2f} {p50 / b50:>9.2f}")
    print(f"wall {wall:.1f} s, {requests / wall:.2f} req/s; failures {len(failures)}")
    for (route, what), count in Counter(failures).most_common():
        print(f"  {count} × {route}: {what}")
    return not failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixed", action="store_true", help="mixed routes with SR (default: batching on/off)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, help="requests at once (default 8; 16 with --mixed)")
    parser.add_argument("--size", type=int, default=768, help="side of the square LR inputs, pixels")
    parser.add_argument("--model", help="generator URI or folder (default: a small compact generator)")
    args = parser.parse_args()
    if args.concurrency is None:
        args.concurrency = 16 if args.mixed else 8
    if args.mixed:
        with tempfile.TemporaryDirectory(prefix="semqa-bench-") as tmp:
            workdir = Path(tmp)
            ok = bench_mixed(args.model or _tiny_model(workdir / "model"), args.requests, args.concurrency, workdir)
        if not ok:
            raise SystemExit("failures under load")
        return
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
