"""Download throughput: `mpds download` against a sequential loop, from a loopback server with injected latency.

The server (aiohttp, in its own process so that its CPU time is not counted) answers every request after
`--latency` seconds with one of a few synthetic posters. Both runs fetch the same URLs and do the same
work per image: GET, check that it decodes (`check_image`), write it to disk. `--rounds` repeats the
pair (sequential, then `mpds download`) to show the spread on a busy machine; the load average is
printed with each round, since other processes on the machine take CPU from both runs.

    python benchmarks/bench_download.py [--num 800] [--workers 32] [--latency 0.05] [--size 600x900] [--rounds 1]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
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


def process_cpu_seconds(pid: int) -> float:
    """CPU time of another process (the server), from /proc; 0 where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the machine so far, from /proc/stat; (0, 0) where there is none.
    Steal is time the hypervisor gave to other machines: a round with much of it is not comparable."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


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
    parser.add_argument("--rounds", type=int, default=1, help="sequential + concurrent pairs to run")
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
    mean_kb = sum(map(len, bodies)) / len(bodies) / 1024
    print(f"{args.num} URLs, {width}x{height} JPEG posters ({mean_kb:.0f} KB mean), {args.latency * 1000:.0f} ms "
          f"injected latency, loopback server in its own process, {os.cpu_count()} CPUs")
    urls = [f"http://127.0.0.1:{port}/posters/{index}.jpg" for index in range(args.num)]
    results = []
    try:
        for round_number in range(1, args.rounds + 1):
            results.append(run_round(urls, args.workers, server.pid))
            sequential_rate, sequential_cpu, concurrent_rate, cpu_per_image, server_cpu, load, steal = results[-1]
            print(f"round {round_number} (load average {load[0]:.2f} -> {load[1]:.2f}, "
                  f"{steal * 100:.1f}% of CPU time stolen by the hypervisor)\n"
                  f"  sequential loop : {sequential_rate:6.1f} images/s, {sequential_cpu * 1000:.2f} ms CPU/image\n"
                  f"  mpds download   : {concurrent_rate:6.1f} images/s ({args.workers} workers), "
                  f"{cpu_per_image * 1000:.2f} ms CPU/image (client process, all threads; the server "
                  f"{server_cpu * 1000:.2f} more)\n"
                  f"  speed-up        : {concurrent_rate / sequential_rate:.1f}x")
    finally:
        server.terminate()

    ratios = sorted(concurrent / sequential for sequential, _, concurrent, *_ in results)
    concurrent_rate = sorted(result[2] for result in results)[len(results) // 2]
    cpu_per_image = sorted(result[3] for result in results)[len(results) // 2]
    print(f"speed-up        : {ratios[len(ratios) // 2]:.1f}x (median of {len(ratios)}; "
          f"from {ratios[0]:.1f}x to {ratios[-1]:.1f}x)")
    print(f"projection for {MPDS_POSTERS} posters at this latency: {MPDS_POSTERS / concurrent_rate / 3600:.2f} h wall "
          f"at the median rate; {MPDS_POSTERS * cpu_per_image / 3600:.2f} CPU-hours "
          f"(the client is CPU-bound only past {1 / cpu_per_image:.0f} images/s per core)")


def run_round(urls: list[str], workers: int, server_pid: int):
    """One sequential loop and one `mpds download` over `urls`: the loop's rate and CPU seconds per image,
    the same for `mpds download`, the server's CPU seconds per image, the load average before and after, and the share of stolen time."""
    load_before, ticks_before = os.getloadavg()[0], machine_ticks()
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        raw = work / "raw"
        raw.mkdir()
        with open(raw / "meta.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "title", "genres", "poster-url"])
            writer.writerows([index + 1, f"Film {index}", "['Drama']", url] for index, url in enumerate(urls))

        cpu, start = cpu_seconds(), time.perf_counter()
        stored = sequential(urls, work / "sequential")
        sequential_seconds, sequential_cpu = time.perf_counter() - start, cpu_seconds() - cpu

        config = DownloadConfig(workers=workers, per_host=workers, progress=False)
        cpu, server_cpu, start = cpu_seconds(), process_cpu_seconds(server_pid), time.perf_counter()
        summary = download_release(raw, config)
        concurrent_seconds, concurrent_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        server_cpu = process_cpu_seconds(server_pid) - server_cpu
        downloaded = summary.counts[("ok", None)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if downloaded != len(urls) or stored != len(urls):
        raise RuntimeError(f"expected {len(urls)} images from each run, got {stored} and {downloaded}")
    ticks = [after - before for before, after in zip(ticks_before, machine_ticks())]
    return (stored / sequential_seconds, sequential_cpu / stored, downloaded / concurrent_seconds,
            concurrent_cpu / downloaded, server_cpu / downloaded, (load_before, os.getloadavg()[0]),
            ticks[0] / ticks[1] if ticks[1] else 0.0)


if __name__ == "__main__":
    main()
