"""Writing a raw MPDS release in the hub layout: shards per config and split, plus the dataset card.

The work is cut into *blocks* of meta.csv rows. Each worker turns a run of blocks into *parts*:
one shard file per split, committed together with a manifest in `OUT/.mpds/parts/` once the
part's `train` shard reaches the shard size. A part is written under a temporary name and renamed
only when complete, so a killed build resumes from its manifests with no duplicate and no gap.
Machines share the blocks with `shard=(i, N)`; `merge` then checks that every block is built and
writes `rejects.jsonl` and the card.

Layout of OUT:

    README.md                                 dataset card (YAML: configs, splits, features)
    rejects.jsonl                             every input row left out, with its reason
    data/<config>/<split>/part-<block>.parquet   (.tar with the webdataset format)
    .mpds/                                    build state (not uploaded)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import shutil
import threading
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq
from datasets.utils.py_utils import convert_file_size_to_int
from tqdm.auto import tqdm

from .features import FEATURES, webdataset_samples
from .raw import ALL_SPLIT, MIN_IMAGE_BYTES, RawRelease, Reject, Scan

logger = logging.getLogger(__name__)

STATE_DIR = ".mpds"
FORMATS = ("parquet", "webdataset")
DEFAULT_BLOCK_SIZE = 256
DEFAULT_MAX_SHARD_SIZE = "500MB"
# Row groups of 100 rows keep a writer's buffer small for image configs (as `datasets` does).
ROWS_PER_GROUP = {"posters": 100, "actors": 100, "meta": 10_000}
# Jobs besides the poster blocks: each is one part, built by shard 0.
SINGLE_PART_JOBS = ("meta", "actors", "posters_text")


class BuildError(RuntimeError):
    """A build that cannot go on as asked (another build's state in OUT, missing blocks at merge)."""


@dataclass
class BuildOptions:
    """How `build` writes the hub layout.

    Args:
        format: "parquet", or "webdataset" for tar shards of the posters config.
        num_proc: worker processes.
        shard: `(i, N)`: this machine builds every N-th block of posters starting at i; shard 0
            also builds the actors and meta configs. `merge` runs after all shards are copied into
            one OUT.
        block_size: meta.csv rows per unit of work; a resumed build redoes at most one part.
        max_shard_size: a part's `train` shard closes once it reaches this size ("500MB", or bytes).
        min_image_bytes: smaller images are rejected.
        tokenizer: a CLIP tokenizer name or path that fits the merged prompt exactly; without it a
            close estimate is used.
    """

    format: str = "parquet"
    num_proc: int = 1
    shard: tuple[int, int] = (0, 1)
    block_size: int = DEFAULT_BLOCK_SIZE
    max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE
    min_image_bytes: int = MIN_IMAGE_BYTES
    posters_dir: str = "posters"
    actors_dir: str = "actors"
    tokenizer: Optional[str] = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"shard must be (i, N) with 0 <= i < N, got {self.shard}")
        if self.num_proc < 1 or self.block_size < 1:
            raise ValueError(f"num_proc and block_size must be at least 1, got {self.num_proc} and {self.block_size}")
        self.max_shard_size = convert_file_size_to_int(self.max_shard_size)

    def fingerprint(self) -> dict:
        """The settings every shard and every resumed run of one build must share."""
        return {
            "format": self.format,
            "block_size": self.block_size,
            "max_shard_size": self.max_shard_size,
            "min_image_bytes": self.min_image_bytes,
            "posters_dir": self.posters_dir,
            "actors_dir": self.actors_dir,
            "tokenizer": self.tokenizer,
        }


@dataclass
class BuildSummary:
    """What a build wrote: rows per config and split, and rejected input rows per reason."""

    out_dir: Path
    splits: dict[str, dict[str, int]]
    rejected: dict[str, Counter]
    rejected_images: dict[str, int] = field(default_factory=dict)

    def written(self, config: str) -> int:
        return self.splits.get(config, {}).get(ALL_SPLIT, 0)

    def __str__(self) -> str:
        lines = [f"Built MPDS in {self.out_dir}"]
        for config, splits in self.splits.items():
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.rejected[config].items()))
            rejected = sum(self.rejected[config].values())
            line = f"  {config}: {self.written(config)} rows written, {rejected} input rows rejected"
            if reasons:
                line += f" ({reasons})"
            if self.rejected_images.get(config):
                line += f"; {self.rejected_images[config]} images left out of kept rows"
            lines.append(line)
            if len(splits) > 1:
                lines.append("    splits: " + ", ".join(f"{name} {count}" for name, count in splits.items()))
        lines.append(f"  rejects: {self.out_dir / 'rejects.jsonl'}")
        return "\n".join(lines)


# -- writers of one split's shard ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _compression(config: str) -> dict:
    """Snappy for every Parquet column but image bytes: JPEG does not compress, and trying costs
    more CPU than the rest of a row's writing."""
    schema = FEATURES[config].arrow_schema
    buffer = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), buffer)
    parquet_schema = pq.ParquetFile(pa.BufferReader(buffer.getvalue())).schema
    paths = [parquet_schema.column(index).path for index in range(len(parquet_schema))]
    return {path: "none" if path.endswith(".bytes") else "snappy" for path in paths}


class _ParquetShard:
    """One split's Parquet file, fed Arrow tables and written in row groups of `ROWS_PER_GROUP` rows."""

    def __init__(self, path: Path, config: str):
        self.path = path
        self.rows_per_group = ROWS_PER_GROUP[config]
        self.writer = pq.ParquetWriter(path, FEATURES[config].arrow_schema, compression=_compression(config))
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.num_examples = 0
        self.estimated_bytes = 0

    def write(self, rows: pa.Table, size: int) -> None:
        self.pending.append(rows)
        self.pending_rows += rows.num_rows
        self.num_examples += rows.num_rows
        self.estimated_bytes += size
        if self.pending_rows >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=table.num_rows)
            self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


class _TarShard:
    def __init__(self, path: Path, config: str):
        import webdataset

        self.path = path
        self.config = config
        self.stream = open(path, "wb")
        self.writer = webdataset.TarWriter(self.stream)
        self.num_examples = 0
        self.estimated_bytes = 0

    def write(self, example: dict, size: int) -> None:
        for sample in webdataset_samples(self.config, example):
            sample["json"] = json.dumps(sample["json"], ensure_ascii=False).encode("utf-8")
            self.writer.write(sample)
            self.num_examples += 1
        self.estimated_bytes += size

    def close(self) -> None:
        self.writer.close()
        self.stream.close()


def _payload_size(example: dict) -> int:
    size = 256
    for value in example.values():
        if isinstance(value, dict) and value.get("bytes"):
            size += len(value["bytes"])
        elif isinstance(value, list):
            size += sum(len(item["bytes"]) for item in value if isinstance(item, dict) and item.get("bytes"))
        elif isinstance(value, str):
            size += len(value)
    return size


# -- parts --------------------------------------------------------------------------------------


class _Part:
    """The shards of one run of blocks, committed all together or not at all."""

    def __init__(self, out_dir: Path, config: str, first_block: int, file_format: str):
        self.out_dir = out_dir
        self.config = config
        self.name = f"{config}-{first_block:06d}"
        self.stem = f"part-{first_block:06d}"
        self.extension = "tar" if file_format == "webdataset" else "parquet"
        self.shards: dict[str, Union[_ParquetShard, _TarShard]] = {}
        self.rejects: list[dict] = []
        self.blocks: list[int] = []
        self.input_rows = 0
        self.pending: list[tuple[dict, list[str], int]] = []  # Parquet rows not yet turned into Arrow

    def _tmp_path(self, split: str) -> Path:
        path = self.out_dir / STATE_DIR / "tmp" / self.config / split / f"{self.stem}.{self.extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, example: dict, splits: list[str]) -> None:
        """Add a record to each of its splits' shards."""
        if self.extension == "tar":
            size = _payload_size(example)
            for split in splits:
                self._shard(split).write(example, size)
            return
        # Parquet: rows are turned into Arrow once per group, then each split takes its rows from
        # that table, instead of converting a poster once for `train` and again for each genre.
        self.pending.append((example, splits, _payload_size(example)))
        if len(self.pending) >= ROWS_PER_GROUP[self.config]:
            self._flush_pending()

    def _shard(self, split: str) -> Union[_ParquetShard, _TarShard]:
        if split not in self.shards:
            cls = _TarShard if self.extension == "tar" else _ParquetShard
            self.shards[split] = cls(self._tmp_path(split), self.config)
        return self.shards[split]

    def _flush_pending(self) -> None:
        if not self.pending:
            return
        table = pa.Table.from_pylist([example for example, _, _ in self.pending], schema=FEATURES[self.config].arrow_schema)
        rows_of: dict[str, list[int]] = defaultdict(list)
        sizes: dict[str, int] = defaultdict(int)
        for index, (_, splits, size) in enumerate(self.pending):
            for split in splits:
                rows_of[split].append(index)
                sizes[split] += size
        for split, rows in rows_of.items():
            self._shard(split).write(table if len(rows) == table.num_rows else table.take(rows), sizes[split])
        self.pending = []

    @property
    def size(self) -> int:
        shard = self.shards.get(ALL_SPLIT)
        pending = sum(size for _, splits, size in self.pending if ALL_SPLIT in splits)
        return (shard.estimated_bytes if shard else 0) + pending

    def commit(self) -> dict:
        self._flush_pending()
        splits = {}
        for split, shard in sorted(self.shards.items()):
            shard.close()
            relative = Path("data") / self.config / split / f"{self.stem}.{self.extension}"
            final = self.out_dir / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(shard.path, final)
            splits[split] = {"file": relative.as_posix(), "num_examples": shard.num_examples,
                             "num_bytes": final.stat().st_size}
        manifest = {"config": self.config, "blocks": self.blocks, "input_rows": self.input_rows,
                    "splits": splits, "rejects": self.rejects}
        _write_json_atomic(self.out_dir / STATE_DIR / "parts" / f"{self.name}.json", manifest)
        return manifest


def _write_json_atomic(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1))
    os.replace(tmp, path)


# -- jobs, run in the main process or in workers ------------------------------------------------

_progress: Optional[queue.Queue] = None


def _init_worker(progress) -> None:
    global _progress
    _progress = progress


def _tick(rows: int) -> None:
    if _progress is not None and rows:
        _progress.put(rows)


def _release(raw_dir: str, options: BuildOptions) -> RawRelease:
    count_tokens = None
    if options.tokenizer:
        from transformers import CLIPTokenizer

        from ..prompts import token_counter

        count_tokens = token_counter(CLIPTokenizer.from_pretrained(options.tokenizer))
    return RawRelease(raw_dir, posters_dir=options.posters_dir, actors_dir=options.actors_dir,
                      min_image_bytes=options.min_image_bytes, count_tokens=count_tokens)


def _run_job(raw_dir: str, out_dir: str, options: BuildOptions, scan: Scan, job: str, blocks: list[int]) -> int:
    """Build one job (a config's run of blocks) into committed parts; returns the parts written."""
    release = _release(raw_dir, options)
    out = Path(out_dir)
    if job == "posters":
        return _run_poster_blocks(release, out, options, scan, blocks)
    config = "posters" if job == "posters_text" else job
    part = _Part(out, config, 0, options.format)
    part.name = f"{job}-000000"
    part.blocks = [0]
    if job == "posters_text":
        part.rejects = [reject.to_dict() for reject in release.unmatched_visual_prompts(scan)]
    else:
        records = release.meta_records(scan) if job == "meta" else release.actor_records(scan)
        for _, record in records:
            if isinstance(record, Reject):
                part.rejects.append(record.to_dict())
                if record.file is None:
                    part.input_rows += 1
            else:
                part.write(record, [ALL_SPLIT])
                part.input_rows += 1
    part.commit()
    return 1


def _run_poster_blocks(release: RawRelease, out: Path, options: BuildOptions, scan: Scan, blocks: list[int]) -> int:
    wanted = set(blocks)
    size = options.block_size

    def block_of(row: int) -> int:
        return (row - 1) // size

    visual_prompts = release.visual_prompts()
    pending = sorted(wanted)
    part: Optional[_Part] = None
    parts = 0

    def close_blocks_before(block: Optional[int]) -> None:
        """Mark the blocks before `block` (all when None) as done in the open part; rotate it when full."""
        nonlocal part, parts
        while pending and (block is None or pending[0] < block):
            if part is None:
                part = _Part(out, "posters", pending[0], options.format)
            part.blocks.append(pending.pop(0))
            if part.size >= options.max_shard_size or not pending:
                part.commit()
                parts += 1
                part = None

    rows_seen = 0
    for row, record, splits in release.poster_records(scan, visual_prompts, rows=lambda n: block_of(n) in wanted):
        close_blocks_before(block_of(row))
        if part is None:
            part = _Part(out, "posters", block_of(row), options.format)
        part.input_rows += 1
        if splits is None:
            part.rejects.append(record.to_dict())
        else:
            part.write(record, splits)
        rows_seen += 1
        if rows_seen % 16 == 0:
            _tick(16)
    _tick(rows_seen % 16)
    close_blocks_before(None)
    return parts


# -- the build ----------------------------------------------------------------------------------


def _load_manifests(out: Path) -> list[dict]:
    folder = out / STATE_DIR / "parts"
    if not folder.is_dir():
        return []
    return [json.loads(path.read_text()) | {"name": path.stem} for path in sorted(folder.glob("*.json"))]


def _done_blocks(manifests: list[dict]) -> dict[str, set]:
    """The blocks each job ("posters", "meta", ...) has committed, from the part manifests."""
    done = defaultdict(set)
    for manifest in manifests:
        done[manifest["name"].rsplit("-", 1)[0]].update(manifest["blocks"])
    return done


def _num_blocks(num_rows: int, block_size: int) -> int:
    return max(1, -(-num_rows // block_size))


def _clean_uncommitted(out: Path, manifests: list[dict]) -> None:
    """Remove what a killed run left: temporary files and shards that no manifest names."""
    shutil.rmtree(out / STATE_DIR / "tmp", ignore_errors=True)
    for tmp in (out / STATE_DIR / "parts").glob("*.tmp") if (out / STATE_DIR / "parts").is_dir() else []:
        tmp.unlink()
    committed = {info["file"] for manifest in manifests for info in manifest["splits"].values()}
    data = out / "data"
    if data.is_dir():
        for path in data.rglob("*"):
            if path.is_file() and path.relative_to(out).as_posix() not in committed:
                logger.info("removing %s, left by an interrupted build", path)
                path.unlink()


def _prepare_state(raw: RawRelease, out: Path, options: BuildOptions, scan: Scan) -> None:
    """Record the build's settings, or check that OUT's earlier build used the same ones."""
    inputs = {path.name: path.stat().st_size for path in (raw.meta_csv, raw.posters_csv, raw.actors_csv) if path.is_file()}
    state = {"version": 1, "settings": options.fingerprint(), "inputs": inputs, "num_rows": scan.num_rows,
             "num_blocks": _num_blocks(scan.num_rows, options.block_size)}
    path = out / STATE_DIR / "build.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != state:
            changed = sorted(key for key in state if earlier.get(key) != state[key])
            raise BuildError(
                f"{out} holds a build made with other settings or other input files (differs in: "
                f"{', '.join(changed)}). Resume it with the same options, or build into an empty folder."
            )
    else:
        if (out / "data").exists():
            raise BuildError(f"{out} already has a data/ folder that no mpds build state describes; use an empty folder")
        _write_json_atomic(path, state)


def build(raw_dir, out_dir, options: Optional[BuildOptions] = None, *, progress: bool = True) -> Optional[BuildSummary]:
    """Build a raw MPDS release into the hub layout, resuming whatever OUT already holds.

    Args:
        raw_dir: a raw release (meta.csv, posters.csv, actors.csv, posters/, actors/).
        out_dir: where the hub layout goes; created if needed.
        options: see `BuildOptions`.
        progress: show a progress bar.

    Returns:
        The summary (and OUT gets its card and rejects.jsonl), or None for a shard of a build split
        across machines, which `merge` completes.

    Raises:
        RawFormatError: if raw_dir is not a raw release.
        BuildError: if OUT holds a build with other settings.

    Example:
        >>> from mpds.data import build, sample_dir
        >>> summary = build(sample_dir(), "mpds-hub", progress=False)  # doctest: +SKIP
        >>> summary.written("posters")  # doctest: +SKIP
        96
    """
    options = options or BuildOptions()
    raw = _release(str(raw_dir), replace(options, tokenizer=None))  # the coordinator only scans
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scan = raw.scan()
    _prepare_state(raw, out, options, scan)
    manifests = _load_manifests(out)
    _clean_uncommitted(out, manifests)

    shard_index, num_shards = options.shard
    done = _done_blocks(manifests)
    size = options.block_size
    todo = [block for block in range(_num_blocks(scan.num_rows, size))
            if block % num_shards == shard_index and block not in done["posters"]]
    jobs = [(job, [0]) for job in SINGLE_PART_JOBS if shard_index == 0 and 0 not in done[job]]
    runs = max(1, min(options.num_proc, len(todo)))
    for k in range(runs):
        chunk = todo[k * len(todo) // runs:(k + 1) * len(todo) // runs]
        if chunk:
            jobs.append(("posters", chunk))

    poster_rows = sum(min(size, scan.num_rows - block * size) for block in todo)
    bar = tqdm(total=poster_rows, unit=" posters", desc="Building MPDS", disable=not progress)
    if options.num_proc == 1:
        events: queue.Queue = queue.Queue()
        _init_worker(events)
        try:
            for job, blocks in jobs:
                _run_job(str(raw_dir), str(out), options, scan, job, blocks)
                _drain(events, bar)
        finally:
            _init_worker(None)
    else:
        context = _worker_context()
        events = context.Queue()
        with ProcessPoolExecutor(options.num_proc, mp_context=context, initializer=_init_worker,
                                 initargs=(events,)) as pool:
            futures = [pool.submit(_run_job, str(raw_dir), str(out), options, scan, job, blocks) for job, blocks in jobs]
            stop = threading.Event()
            watcher = threading.Thread(target=_watch, args=(events, bar, stop), daemon=True)
            watcher.start()
            try:
                for future in futures:
                    future.result()
            finally:
                stop.set()
                watcher.join()
    bar.close()
    shutil.rmtree(out / STATE_DIR / "tmp", ignore_errors=True)
    if num_shards > 1:
        print(f"Shard {shard_index}/{num_shards} built in {out}. Copy every shard's OUT into one folder, "
              f"then run `mpds merge` on it to write the card.")
        return None
    return merge(out)


def _worker_context():
    """Workers fork from a server that has imported the build once (spawn where fork is unavailable)."""
    try:
        context = get_context("forkserver")
    except ValueError:
        return get_context("spawn")
    context.set_forkserver_preload([__name__])
    return context


def _drain(events: queue.Queue, bar) -> None:
    while True:
        try:
            bar.update(events.get_nowait())
        except queue.Empty:
            return


def _watch(events, bar, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            bar.update(events.get(timeout=0.2))
        except queue.Empty:
            continue
    _drain(events, bar)


def merge(out_dir) -> BuildSummary:
    """Check that every block of a build is in OUT, then write `rejects.jsonl` and the card.

    Raises:
        BuildError: if OUT holds no build, or some blocks are missing (a shard not copied in yet,
            or an interrupted shard: run its build again to resume it).
    """
    from ..loading_script.card import write_card

    out = Path(out_dir)
    state_path = out / STATE_DIR / "build.json"
    if not state_path.is_file():
        raise BuildError(f"{out} holds no mpds build (no {STATE_DIR}/build.json)")
    state = json.loads(state_path.read_text())
    manifests = _load_manifests(out)
    done = _done_blocks(manifests)
    missing = sorted(set(range(state["num_blocks"])) - done["posters"])
    missing_jobs = [job for job in SINGLE_PART_JOBS if 0 not in done[job]]
    if missing or missing_jobs:
        blocks = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise BuildError(
            f"{out} is incomplete: poster blocks [{blocks}] and jobs {missing_jobs} are not built. "
            f"Copy in the missing shards' output, or run `mpds build` again for them to resume."
        )

    splits: dict[str, dict[str, dict]] = defaultdict(dict)
    rejects: list[dict] = []
    for manifest in manifests:
        rejects.extend(manifest["rejects"])
        for split, info in manifest["splits"].items():
            entry = splits[manifest["config"]].setdefault(split, {"files": [], "num_examples": 0, "num_bytes": 0})
            entry["files"].append(info["file"])
            entry["num_examples"] += info["num_examples"]
            entry["num_bytes"] += info["num_bytes"]
    for config in splits.values():
        for entry in config.values():
            entry["files"].sort()

    rejects.sort(key=lambda item: (item["config"], item["source"], item["row"], item.get("file") or ""))
    with open(out / "rejects.jsonl.tmp", "w", encoding="utf-8") as handle:
        for item in rejects:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(out / "rejects.jsonl.tmp", out / "rejects.jsonl")

    ordered = {}
    for config in ("posters", "actors", "meta"):
        config_splits = splits.get(config, {})
        names = [ALL_SPLIT] + sorted(name for name in config_splits if name != ALL_SPLIT)
        ordered[config] = {name: config_splits.get(name, {"files": [], "num_examples": 0, "num_bytes": 0}) for name in names}
    rejected: dict[str, Counter] = {config: Counter() for config in ordered}
    rejected_images: dict[str, int] = Counter()
    for item in rejects:
        if item["config"] == "actors" and "file" in item:
            rejected_images["actors"] += 1
        else:
            rejected[item["config"]][item["reason"]] += 1
    summary = BuildSummary(
        out_dir=out,
        splits={config: {name: entry["num_examples"] for name, entry in config_splits.items()}
                for config, config_splits in ordered.items()},
        rejected=rejected,
        rejected_images=dict(rejected_images),
    )
    write_card(out, ordered, state["settings"]["format"], summary)
    return summary
