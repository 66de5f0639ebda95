"""Download throughput: `mpds download` against a sequential loop, from a loopback server with injected latency.

The server (aiohttp, in its own process so that its CPU time is not counted) answers every request after
`--latency` seconds with one of a few synthetic posters. Both runs fetch the same URLs and do the same
work per image: GET, check that it decodes (`check_image`), write it to disk.

    python benchmarks/bench_download.py [--num 800] [--workers 32] [--latency 0.05] [--size 600x900]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path

import httpx

from mpds.acquisition.download import DownloadConfig, download_release
from mpds.data.raw import check_image
from mpds.testing.synthetic import COLOURS, SHAPES, SyntheticPoster, draw_poster, jpeg_bytes

MPDS_POSTERS = 373_000


def serve(port: int, latency: float, bodies: list[bytes], ready) -> None:
    import asyncio

    from aiohttp import web

    async def poster(request):
        await asyncio.sleep(latency)
        index = int(request.match_info["index"])
        return web.Response(body=bodies[index % len(bodies)], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/posters/{index}.jpg", poster)

    async def main():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sequential(urls: list[str], out: Path) -> int:
    """The plain loop: one request at a time, checked and written like the downloader does."""
    out.mkdir(parents=True)
    stored = 0
    with httpx.Client(timeout=30) as client:
        for index, url in enumerate(urls):
            response = client.get(url)
            if response.status_code == 200 and check_image(response.content) is None:
                (out / f"{index}.jpg").write_bytes(response.content)
                stored += 1
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=800, help="URLs fetched by each run")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before answering")
    parser.add_argument("--size", default="600x900", help="poster size in pixels")
    parser.add_argument("--distinct", type=int, default=16, help="distinct posters served")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    colours = list(COLOURS)
    posters = [SyntheticPoster(colours[k % 8], colours[(k + 3) % 8], SHAPES[k % 4], f"Film {k}", ["Ava Stone"])
               for k in range(args.distinct)]
    bodies = [jpeg_bytes(draw_poster(poster, (width, height), seed=k)) for k, poster in enumerate(posters)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, args.latency, bodies, ready), daemon=True)
    server.start()
    ready.wait(30)
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        urls = [f"http://127.0.0.1:{port}/posters/{index}.jpg" for index in range(args.num)]
        raw = work / "raw"
        raw.mkdir()
        with open(raw / "meta.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "title", "genres", "poster-url"])
            writer.writerows([index + 1, f"Film {index}", "['Drama']", url] for index, url in enumerate(urls))

        cpu, start = cpu_seconds(), time.perf_counter()
        stored = sequential(urls, work / "sequential")
        sequential_seconds, sequential_cpu = time.perf_counter() - start, cpu_seconds() - cpu

        config = DownloadConfig(workers=args.workers, per_host=args.workers, progress=False)
        cpu, start = cpu_seconds(), time.perf_counter()
        summary = download_release(raw, config)
        concurrent_seconds, concurrent_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        downloaded = summary.counts[("ok", None)]
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)

    mean_kb = sum(map(len, bodies)) / len(bodies) / 1024
    sequential_rate, concurrent_rate = stored / sequential_seconds, downloaded / concurrent_seconds
    cpu_per_image = concurrent_cpu / downloaded
    print(f"{args.num} URLs, {width}x{height} JPEG posters ({mean_kb:.0f} KB mean), {args.latency * 1000:.0f} ms "
          f"injected latency, loopback server in its own process")
    print(f"sequential loop : {stored} images in {sequential_seconds:.2f} s = {sequential_rate:.1f} images/s, "
          f"{sequential_cpu / stored:.5f} CPU s/image")
    print(f"mpds download   : {downloaded} images in {concurrent_seconds:.2f} s = {concurrent_rate:.1f} images/s "
          f"({args.workers} workers), {cpu_per_image:.5f} CPU s/image (client process, all threads)")
    print(f"speed-up        : {concurrent_rate / sequential_rate:.1f}x")
    print(f"projection for {MPDS_POSTERS} posters at this latency: {MPDS_POSTERS / concurrent_rate / 3600:.2f} h wall "
          f"at the measured rate; {MPDS_POSTERS * cpu_per_image / 3600:.2f} CPU-hours "
          f"(the client is CPU-bound only past {1 / cpu_per_image:.0f} images/s per core)")


if __name__ == "__main__":
    main()
