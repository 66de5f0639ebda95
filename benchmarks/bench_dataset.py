"""Dataset benchmark: build throughput and peak memory against an I/O floor, and streaming read speed.

Everything is measured side by side in one run, on synthetic releases of N posters:

- build: `mpds build` throughput (posters/s) against the I/O floor, a loop that reads each poster's
  bytes and writes them to Parquet with pyarrow (the least any build must do). Goal: build time
  within 1.25x of the floor. Also printed: the floor plus the decode check the build runs on every
  image (`mpds.data.raw.check_image`, to drop images that do not decode), which shows how much of
  the gap that check alone takes.
- memory: peak RSS of the build at 10k posters against 1k. Goal: within 1.2x (the build streams).
- streaming: iterating the built `posters` split with `load_dataset(..., streaming=True)`, decoding
  each image, against opening and decoding the raw files with PIL; the reads advance side by side,
  200 posters at a time each, and the fastest of a few rounds is kept. Goal: at least 0.9x the raw read.

Each build and floor runs in a fresh subprocess so that its peak RSS is its own.

    python benchmarks/bench_dataset.py [--sizes 1000 10000] [--num-proc 1 2] [--poster-size 200x300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class _PeakMemory:
    """The peak resident memory of this process and its workers, sampled every 10 ms.

    `ru_maxrss` will not do: Linux keeps it across fork and exec, so a child would report its
    parent's high-water mark.
    """

    def __init__(self):
        import threading

        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        import psutil

        while not self.stop.wait(0.01):
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def finish(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / 2**20


def _child(task: str, raw: str, out: str, num_proc: int) -> None:
    """Run one measured task in this (fresh) process and print its figures as JSON."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mpds.data import BuildOptions, build

    memory = _PeakMemory()
    start = time.perf_counter()  # after the imports: both sides pay only for their work
    if task == "build":
        summary = build(raw, out, BuildOptions(num_proc=num_proc), progress=False)
        posters = summary.written("posters")
    else:  # the I/O floor: read each poster's bytes, write them to Parquet, nothing else
        from mpds.data.raw import check_image

        schema = pa.schema([("id", pa.int64()), ("image", pa.binary())])
        files = sorted(Path(raw, "posters").iterdir())
        with pq.ParquetWriter(Path(out) / "floor.parquet", schema) as writer:
            for index in range(0, len(files), 100):
                batch = [path.read_bytes() for path in files[index:index + 100]]
                if task == "floor_checked":  # plus the decode check the build owes every image
                    batch = [data for data in batch if check_image(data) is None]
                writer.write_table(pa.table({"id": list(range(index, index + len(batch))), "image": batch},
                                            schema=schema))
        posters = len(files)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "posters": posters, "peak_rss_mb": memory.finish()}))


def measure(task: str, raw: Path, out: Path, num_proc: int = 1) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, __file__, "--child", task, str(raw), str(out), str(num_proc)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def streaming_read(out: Path, raw: Path, repeats: int, chunk: int = 200) -> dict:
    """Seconds to decode every poster streamed from the build (all columns, and the columns training
    reads), and to read and decode the raw folder with PIL.

    The three reads advance together, `chunk` posters at a time each, so that a busy moment of the
    machine falls on all of them alike; the fastest of `repeats` such rounds is kept for each."""
    import datasets
    from PIL import Image

    start = time.perf_counter()
    stream = datasets.load_dataset(str(out), "posters", split="train", streaming=True)
    result = {"setup": time.perf_counter() - start}
    paths = sorted((raw / "posters").iterdir())

    def decode_streamed(row):
        row["image"].load()

    def decode_raw(path):
        with Image.open(path) as image:
            image.load()

    for _ in range(repeats):
        reads = {"all_columns": (iter(stream), decode_streamed),
                 "training_columns": (iter(stream.select_columns(["image", "prompt"])), decode_streamed),
                 "raw": (iter(paths), decode_raw)}
        seconds = dict.fromkeys(reads, 0.0)
        counts = dict.fromkeys(reads, 0)
        while reads:
            for name, (items, decode) in list(reads.items()):
                done, start = 0, time.perf_counter()
                for _, item in zip(range(chunk), items):
                    decode(item)
                    done += 1
                seconds[name] += time.perf_counter() - start
                counts[name] += done
                if done < chunk:  # this read is over
                    del reads[name]
        for name, value in seconds.items():
            result[name] = min(result.get(name, float("inf")), value)
        if len(set(counts.values())) != 1:
            raise RuntimeError(f"the reads saw different numbers of posters: {counts}")
        result["count"] = counts["raw"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--poster-size", default="200x300",
                        help="synthetic poster size in pixels (MPDS posters are larger: try 600x900)")
    parser.add_argument("--read-repeats", type=int, default=3,
                        help="rounds of the streaming and raw reads; the fastest of each is kept")
    parser.add_argument("--workdir", help="where to write the synthetic releases (default: a temp folder)")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mpds.testing.synthetic import make_raw_release

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mpds-bench-"))
    poster_size = tuple(int(side) for side in args.poster_size.split("x"))
    print(f"CPU cores: {os.cpu_count()}; work folder: {work}; posters {args.poster_size} px")
    peaks = {}
    for size in args.sizes:
        raw = work / f"raw-{size}-{args.poster_size}"
        if not (raw / "meta.csv").exists():
            make_raw_release(raw, size, 50, faults=False, distinct_images=200, poster_size=poster_size)
        floor = measure("floor", raw, work / f"floor-{size}-{args.poster_size}")
        checked = measure("floor_checked", raw, work / f"floor-checked-{size}-{args.poster_size}")
        print(f"\nN = {size} posters")
        print(f"  I/O floor (read bytes -> Parquet): {floor['posters'] / floor['seconds']:8.1f} posters/s, "
              f"peak RSS {floor['peak_rss_mb']:.0f} MB")
        print(f"  floor + image decode check:        {checked['posters'] / checked['seconds']:8.1f} posters/s "
              f"({checked['seconds'] / floor['seconds']:.2f}x the floor: the check alone, one process)")
        for num_proc in args.num_proc:
            out = work / f"hub-{size}-{args.poster_size}-{num_proc}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            result = measure("build", raw, out, num_proc)
            peaks[(size, num_proc)] = result["peak_rss_mb"]
            print(f"  mpds build --num-proc {num_proc}:      {result['posters'] / result['seconds']:8.1f} posters/s, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB, time / floor = {result['seconds'] / floor['seconds']:.2f}x "
                  f"(goal <= 1.25x); / floor with check = {result['seconds'] / checked['seconds']:.2f}x")
        read = streaming_read(work / f"hub-{size}-{args.poster_size}-{args.num_proc[0]}", raw, args.read_repeats)
        print(f"  raw folder read with PIL:          {read['count'] / read['raw']:8.1f} posters/s "
              f"(reads side by side: fastest of {args.read_repeats} rounds)")
        for name in ("all_columns", "training_columns"):
            print(f"  streaming read, {name.replace('_', ' '):<17} {read['count'] / read[name]:8.1f} posters/s, "
                  f"ratio to raw {read['raw'] / read[name]:.2f}x (goal >= 0.9x)")
        print(f"  (load_dataset setup before the first row: {read['setup']:.2f} s)")
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for num_proc in args.num_proc:
            ratio = peaks[(large, num_proc)] / peaks[(small, num_proc)]
            print(f"\npeak RSS at {large} / at {small} posters (--num-proc {num_proc}): {ratio:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
