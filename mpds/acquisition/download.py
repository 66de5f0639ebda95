"""Downloading the posters and actor photos of a raw MPDS release from the URLs of its CSV files.

`meta.csv` gives one poster URL per movie (`posters/<id>.jpg`); `actors.csv` gives one or more photo
URLs per actor (`actors/<actor_id>_<k>.jpg`, k counting the actor's distinct URLs from 0 in file
order). Every row of both files ends in `download_status.jsonl` with what happened to it:

    {"key": "poster:1000", "kind": "poster", "id": 1000, "url": "...", "file": "posters/1000.jpg",
     "status": "ok", "reason": null, "detail": null, "bytes": 18211, "attempts": 1, ...}

`status` is `ok` (downloaded), `exists` (the file was already there), `failed` (see `reason`) or
`skipped` (the row is not to be downloaded: an Adult title, a row without a URL or a usable id).

A run can be killed at any moment: images are written under a temporary name and renamed when
complete, and the status file is appended line by line. A second run skips what is on disk and
retries the rest, then rewrites the status file with one line per row, in input order.

    from mpds.acquisition.download import DownloadConfig, download_release
    summary = download_release("mpds_raw", DownloadConfig(workers=32))
    print(summary.counts)
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import netrc
import os
import re
import stat
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable, Optional, Union

import aiohttp
from PIL import Image
from yarl import URL
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random
from tqdm.auto import tqdm

from .. import __version__
from ..data.parsing import CellError, parse_id, parse_list, parse_url_list
from ..data.raw import (IMAGE_EXTENSIONS, MIN_IMAGE_BYTES, RawFormatError, RawRelease, Reject, decode_problem,
                        open_image, read_csv, size_problem)

STATUS_FILE = "download_status.jsonl"
ALLOWED_SCHEMES = ("http", "https")
# Statuses that retry no more: their file is on disk. Everything else is tried again on the next run.
DONE_STATUSES = ("ok", "exists")
_TEMP_SUFFIX = ".part"


class DownloadError(ValueError):
    """A download run cannot start: a bad option or a raw folder it cannot read."""


@dataclass
class DownloadConfig:
    """How `download_release` fetches.

    Args:
        workers: downloads in flight at once.
        per_host: downloads in flight at once to one host (`host:port`).
        timeout: seconds one request (one redirect hop) may take, from connecting to its last byte.
        retries: further attempts after a network error, a timeout, a 429 or a 5xx.
        backoff: seconds before the first retry; each retry doubles it, plus up to `backoff` of
            random jitter, up to `max_backoff`. A `Retry-After` header is waited out instead.
        max_backoff: the longest wait between two attempts (not applied to `Retry-After`).
        max_retry_after: a `Retry-After` longer than this fails the URL for this run instead of waiting.
        max_bytes: larger bodies are refused (`body_too_large`) without being read in full.
        max_pixels: images with more pixels are refused (`image_too_large`), before they are decoded.
        min_bytes: smaller bodies are refused (`image_too_small`); the paper drops images under 5 KB.
        max_redirects: redirects followed per attempt; each must go to http or https.
        shard: `(i, N)` to fetch only the i-th of N parts, counted from 0 (0 <= i < N); see `shard_of`.
        posters, actors: which images to fetch.
        progress: show a progress bar.
    """

    workers: int = 32
    per_host: int = 16
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb threshold
    min_bytes: int = MIN_IMAGE_BYTES
    max_redirects: int = 5
    shard: Optional[tuple[int, int]] = None
    posters: bool = True
    actors: bool = True
    progress: bool = True

    def __post_init__(self):
        for name in ("workers", "per_host", "max_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise DownloadError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("timeout",):
            if not getattr(self, name) > 0:
                raise DownloadError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("retries", "backoff", "max_backoff", "max_retry_after", "min_bytes", "max_redirects"):
            if getattr(self, name) < 0:
                raise DownloadError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.shard is not None:
            index, count = self.shard
            if not 0 <= index < count:
                raise DownloadError(f"shard must be i/N with 0 <= i < N, got {index}/{count}")
        if not (self.posters or self.actors):
            raise DownloadError("nothing to download: both posters and actors are turned off")


@dataclass(slots=True)  # a release has hundreds of thousands of them
class Task:
    """One row (or one URL of a row) of the release: an image to fetch, or a row recorded as skipped."""

    key: str
    kind: str
    id: Optional[int]
    url: Optional[str]
    file: Optional[str]
    source: str
    row: int
    shard_id: int
    skip: Optional[tuple[str, str]] = None  # (reason, detail) when the row is not to be fetched

    def entry(self, status: str, reason: Optional[str] = None, detail: Optional[str] = None,
              num_bytes: Optional[int] = None, attempts: int = 0, **extra) -> dict:
        return {"key": self.key, "kind": self.kind, "id": self.id, "url": self.url, "file": self.file,
                "status": status, "reason": reason, "detail": detail, "bytes": num_bytes,
                "attempts": attempts, "source": self.source, "row": self.row, **extra}


def shard_of(task: Task, count: int) -> int:
    """The part (0 to `count` - 1) a task belongs to: by movie or actor id, so all photos of an actor
    go to one machine; rows without a usable id go by row number."""
    return task.shard_id % count


def plan_downloads(root: Union[str, Path], *, posters: bool = True, actors: bool = True) -> list[Task]:
    """Every row of `meta.csv` and `actors.csv` as a `Task`, in file order.

    Raises:
        RawFormatError: if `meta.csv` is missing or lacks a column the plan needs.
    """
    release = RawRelease(root)
    tasks: list[Task] = []
    if posters:
        tasks += _poster_tasks(release)
    if actors and release.actors_csv.is_file():
        tasks += _actor_tasks(release)
    return tasks


def _poster_tasks(release: RawRelease) -> list[Task]:
    tasks = []
    source = release.meta_csv.name
    for number, movie in release.movies(release.scan(), "download"):
        if isinstance(movie, Reject):
            key = f"poster:{movie.id}" if movie.reason == "excluded_genre" else f"{source}:row:{number}"
            tasks.append(Task(key, "poster", movie.id, None, None, source, number,
                              movie.id if movie.reason == "excluded_genre" else number,
                              skip=(movie.reason, movie.detail)))
            continue
        file = f"{release.posters_dir}/{movie.id}.jpg"
        task = Task(f"poster:{movie.id}", "poster", movie.id, movie.poster_url, file, source, number, movie.id)
        if not movie.poster_url:
            task.skip = ("no_url", "the poster-url cell is empty")
        tasks.append(task)
    return tasks


def _actor_tasks(release: RawRelease) -> list[Task]:
    source = release.actors_csv.name
    rows: list[tuple[int, Optional[int], Optional[str], Optional[tuple[str, str]]]] = []
    for number, row in read_csv(release.actors_csv, ("id", "image-url")):
        try:
            actor_id = parse_id(row.get("id"))
        except CellError as error:
            rows.append((number, None, None, ("invalid_id", str(error))))
            continue
        try:
            urls = parse_url_list(row.get("image-url"))
        except CellError as error:
            rows.append((number, actor_id, None, ("unreadable_cell", str(error))))
            continue
        if not urls:
            rows.append((number, actor_id, None, ("no_url", "the image-url cell is empty")))
        rows += [(number, actor_id, url, None) for url in urls]
    tasks = []
    seen: dict[int, list[str]] = {}
    for position, (number, actor_id, url, skip) in enumerate(rows):
        if skip is not None:
            shard_id = actor_id if actor_id is not None else number
            tasks.append(Task(f"{source}:row:{number}", "actor", actor_id, None, None, source, number, shard_id,
                              skip=skip))
            continue
        urls = seen.setdefault(actor_id, [])
        if url in urls:
            detail = f"actor {actor_id} already has this URL as photo {urls.index(url)}"
            tasks.append(Task(f"{source}:row:{number}:{position}", "actor", actor_id, url, None, source, number,
                              actor_id, skip=("duplicate_url", detail)))
            continue
        k = len(urls)
        urls.append(url)
        tasks.append(Task(f"actor:{actor_id}:{k}", "actor", actor_id, url,
                          f"{release.actors_dir}/{actor_id}_{k}.jpg", source, number, actor_id))
    return tasks


# -- fetching -------------------------------------------------------------------------------------


class _Failure(Exception):
    """A URL that did not give an image; `transient` ones are retried."""

    def __init__(self, reason: str, detail: str, *, transient: bool = False, retry_after: Optional[float] = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.retry_after = retry_after
        self.attempts = 1


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _Failure):
        return error.transient
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError)) and not isinstance(error, aiohttp.InvalidURL)


def _failure_of(error: BaseException) -> _Failure:
    if isinstance(error, aiohttp.InvalidURL):
        return _Failure("invalid_url", str(error))
    if isinstance(error, asyncio.TimeoutError):
        return _Failure("timeout", f"no complete response within the timeout ({type(error).__name__})")
    if isinstance(error, aiohttp.ClientPayloadError):
        return _Failure("incomplete_body", f"{type(error).__name__}: {error}")
    return _Failure("network_error", f"{type(error).__name__}: {error}")


class _Environment:
    """The proxy variables and `.netrc` credentials that aiohttp's `trust_env` applies, read once per run.

    aiohttp reads both again for every request, in two hops to a worker thread each; at a few hundred
    requests a second those hops cost the event loop as much as the request itself.
    """

    def __init__(self):
        self.proxies = urllib.request.getproxies()  # HTTP_PROXY, HTTPS_PROXY, NO_PROXY and lowercase
        self.netrc = _read_netrc()
        self._options: dict[tuple[str, Optional[str]], dict] = {}

    def options(self, url: URL) -> dict:
        """Keyword arguments for `session.get(url)`: `proxy`, `proxy_headers` and `headers`, where they apply."""
        key = (url.scheme, url.host)
        if key not in self._options:
            options = {}
            proxy = URL(self.proxies[url.scheme]) if url.scheme in self.proxies else None
            # Like aiohttp, only http:// proxies (aiohttp ignores the others, with a warning).
            if proxy is not None and proxy.scheme == "http" and url.host and not urllib.request.proxy_bypass(url.host):
                options["proxy"] = proxy.with_user(None)
                login = (proxy.user, proxy.password or "") if proxy.user else self._login(proxy.host)
                if login:
                    options["proxy_headers"] = {"Proxy-Authorization": _basic_auth(*login)}
            if login := self._login(url.host):
                options["headers"] = {"Authorization": _basic_auth(*login)}
            self._options[key] = options
        options = self._options[key]
        if url.user is not None and "headers" in options:  # credentials in the URL win, as in aiohttp
            options = {name: value for name, value in options.items() if name != "headers"}
        return options

    def _login(self, host: Optional[str]) -> Optional[tuple[str, str]]:
        found = self.netrc.authenticators(host) if self.netrc is not None and host else None
        if found is None:
            return None
        login, account, password = found
        return login or account or "", password or ""


def _basic_auth(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode("utf-8")).decode("ascii")


def _read_netrc() -> Optional[netrc.netrc]:
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path) if os.path.isfile(path) else None
    except (OSError, netrc.NetrcParseError):
        return None


@dataclass
class _Fetched:
    body: bytes
    content_type: Optional[str]
    attempts: int


class Downloader:
    """Fetches and stores the tasks of one run; `download_release` drives it.

    Args:
        root: the raw release folder; task files are relative to it.
        config: see `DownloadConfig`.
        sleep: the coroutine that waits between attempts (tests pass one that records the waits).
    """

    def __init__(self, root: Path, config: DownloadConfig,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.root = Path(root)
        self.config = config
        self.sleep = sleep
        self.environment = _Environment()
        self._folders: set[Path] = set()  # image folders known to exist
        self._backoff = (wait_exponential(multiplier=config.backoff, max=config.max_backoff)
                         + wait_random(0, config.backoff))

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session of a run: `workers` connections in all, `per_host` to one host. Proxy
        variables and `.netrc` apply as with aiohttp's `trust_env`, read once (see `_Environment`)."""
        connector = aiohttp.TCPConnector(limit=self.config.workers, limit_per_host=self.config.per_host)
        # `total` covers connecting, sending and reading the whole body, so a server that trickles
        # bytes cannot hold a worker.
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                                     headers={"User-Agent": f"mpds/{__version__} (dataset download)"})

    def _wait(self, retry_state) -> float:
        error = retry_state.outcome.exception()
        if isinstance(error, _Failure) and error.retry_after is not None:
            return error.retry_after
        return self._backoff(retry_state)

    async def fetch(self, session: aiohttp.ClientSession, url: str) -> _Fetched:
        """The body of `url`, retried as configured.

        Raises:
            _Failure: with the reason of the last attempt.
        """
        attempts = 0
        retrying = AsyncRetrying(stop=stop_after_attempt(self.config.retries + 1), wait=self._wait,
                                 retry=retry_if_exception(_is_transient), sleep=self.sleep, reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    body, content_type = await self._get(session, url)
        except _Failure as failure:
            failure.attempts = attempts
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            failure = _failure_of(error)
            failure.attempts = attempts
            raise failure from error
        return _Fetched(body, content_type, attempts)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> tuple[bytes, Optional[str]]:
        """One attempt: GET `url`, following at most `max_redirects` redirects to http or https."""
        try:
            current = URL(url)
        except (ValueError, TypeError) as error:
            raise _Failure("invalid_url", f"{url!r}: {error}") from error
        if current.scheme not in ALLOWED_SCHEMES:
            raise _Failure("unsupported_scheme", f"{current.scheme or 'no'} scheme in {url!r}; only http and https")
        if not current.host:
            raise _Failure("invalid_url", f"no host in {url!r}")
        for _ in range(self.config.max_redirects + 1):
            async with session.get(current, allow_redirects=False, **self.environment.options(current)) as response:
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    try:
                        target = current.join(URL(location))
                    except (ValueError, TypeError) as error:
                        raise _Failure("invalid_redirect", f"{response.status} redirect to {location!r}: {error}")
                    if target.scheme not in ALLOWED_SCHEMES:
                        raise _Failure("unsafe_redirect", f"{response.status} redirect from {current} to {target} "
                                       f"({target.scheme or 'no'} scheme; only http and https)")
                    current = target
                    continue
                return await self._read(response), response.headers.get("Content-Type")
        raise _Failure("too_many_redirects", f"more than {self.config.max_redirects} redirects from {url}")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        status = response.status
        detail = f"HTTP {status} {response.reason or ''}".strip()
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.config.max_retry_after:
                raise _Failure(f"http_{status}", f"{detail}; Retry-After {retry_after:.0f} s is longer than "
                               f"max_retry_after ({self.config.max_retry_after:.0f} s), left for the next run")
            raise _Failure(f"http_{status}", detail, transient=True, retry_after=retry_after)
        if not 200 <= status < 300:
            raise _Failure(f"http_{status}", detail)
        if response.content_length is not None and response.content_length > self.config.max_bytes:
            raise _Failure("body_too_large", f"Content-Length {response.content_length} is over max_bytes "
                           f"({self.config.max_bytes})")
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self.config.max_bytes:
                raise _Failure("body_too_large", f"more than max_bytes ({self.config.max_bytes}) received")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- storing --------------------------------------------------------------------------------

    def check_body(self, body: bytes, content_type: Optional[str]):
        """`(bytes to save, None, source format)` for a usable image, `(None, (reason, detail), None)` otherwise.

        The checks of `mpds.data.raw.check_image`, on one `Image.open`: the header first (an image, not
        too many pixels), then the size in bytes, then a real decode. JPEG bodies are saved as received;
        other formats are re-encoded to JPEG.
        """
        try:
            image = open_image(body)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            return None, ("image_too_large", str(error)), None
        except Exception as error:  # Pillow raises several types for bytes that are no image
            head = body[:40].decode("latin-1").replace("\n", " ")
            return None, ("not_an_image", f"{content_type or 'no content type'}, starts with {head!r} "
                          f"({type(error).__name__})"), None
        with image:
            image_format, width, height = image.format, image.width, image.height
            if width * height > self.config.max_pixels:
                return None, ("image_too_large", f"{width}x{height} = {width * height} pixels, over max_pixels "
                              f"({self.config.max_pixels})"), None
            problem = size_problem(len(body), self.config.min_bytes) or decode_problem(image)
            if problem:
                return None, problem, None
        if image_format == "JPEG":
            return body, None, image_format
        try:
            return _to_jpeg(body), None, image_format
        except Exception as error:  # an image Pillow reads but cannot turn into RGB
            return None, ("conversion_failed", f"{image_format} to JPEG: {type(error).__name__}: {error}"), None

    def write_temporary(self, task: Task, data: bytes) -> Path:
        """Write `data` next to the task's file under a temporary name.

        Not `fsync`ed, as huggingface_hub and pip do not (one `fsync` per image took 0.35 ms of CPU
        and 0.8 ms of waiting on a 2-core test machine). A kill cannot leave a partial file under the
        final name (the rename comes after the write); a power loss can leave the last images empty,
        and `_on_disk` does not count those as done.
        """
        final = self.root / task.file
        if final.parent not in self._folders:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(final.parent)
        temporary = final.with_name(final.name + _TEMP_SUFFIX)
        temporary.write_bytes(data)
        return temporary

    def store(self, task: Task, fetched: _Fetched) -> tuple[dict, Optional[Path]]:
        """Validate a body and write it under its temporary name: the status entry and that name."""
        data, problem, source_format = self.check_body(fetched.body, fetched.content_type)
        if problem:
            reason, detail = problem
            return task.entry("failed", reason, detail, len(fetched.body), fetched.attempts), None
        temporary = self.write_temporary(task, data)
        extra = {} if source_format == "JPEG" else {"converted_from": source_format}
        return task.entry("ok", None, None, len(fetched.body), fetched.attempts, **extra), temporary


def _to_jpeg(body: bytes) -> bytes:
    with Image.open(io.BytesIO(body)) as image:
        image.seek(0)
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat = image.convert("RGB")
    buffer = io.BytesIO()
    flat.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# -- the status file ------------------------------------------------------------------------------


def read_status(path: Path) -> dict[str, dict]:
    """The last entry of each key in a status file; a line cut short by a kill is ignored."""
    return {key: json.loads(line) for key, line in _status_lines(path).items()}


def _status_lines(path: Path) -> dict[str, str]:
    # Lines are kept as text, not dicts: a third of the memory for the 400k rows of a release.
    lines: dict[str, str] = {}
    if not path.is_file():
        return lines
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "key" in entry:
                lines[entry["key"]] = line.rstrip("\n")
    return lines


def _write_status(path: Path, tasks: list[Task], lines: dict[str, str]) -> None:
    temporary = path.with_name(path.name + _TEMP_SUFFIX)
    with open(temporary, "w", encoding="utf-8") as handle:
        for task in tasks:
            if task.key in lines:
                handle.write(lines[task.key] + "\n")
    os.replace(temporary, path)


def default_status_file(root: Path, shard: Optional[tuple[int, int]]) -> Path:
    """`download_status.jsonl`, or `download_status.shard-i-of-N.jsonl` for a shard, so that shards
    sharing one folder never rewrite each other's file."""
    if shard is None or shard[1] == 1:
        return root / STATUS_FILE
    return root / f"download_status.shard-{shard[0]}-of-{shard[1]}.jsonl"


# -- a run ----------------------------------------------------------------------------------------


@dataclass
class DownloadSummary:
    """What a run did: `counts` of `(status, reason)`, the bytes received, and the status file."""

    counts: Counter = field(default_factory=Counter)
    num_bytes: int = 0
    seconds: float = 0.0
    fetched: int = 0
    status_file: Optional[Path] = None

    def format(self) -> str:
        lines = [f"{self.fetched} URLs fetched in {self.seconds:.1f} s "
                 f"({self.fetched / self.seconds if self.seconds else 0:.1f}/s, {self.num_bytes / 1e6:.1f} MB)"]
        for (status, reason), count in sorted(self.counts.items(), key=lambda item: (item[0][0], str(item[0][1]))):
            lines.append(f"  {status:14s} {reason or '':22s} {count}")
        lines.append(f"status of every row: {self.status_file}")
        return "\n".join(lines)


def _on_disk(root: Path, task: Task, min_bytes: int) -> Optional[Path]:
    """The task's image if it is on disk with at least `min_bytes` bytes (a smaller one, such as an
    image a power loss left empty, is fetched again), else None."""
    final = root / task.file
    candidates = [final]
    if task.kind == "poster":  # a release may hold posters as .png or .webp; those count as done
        candidates += [final.with_suffix(extension) for extension in IMAGE_EXTENSIONS]
    for path in dict.fromkeys(candidates):  # `final` once, though `.jpg` is among the extensions
        try:
            info = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size >= min_bytes:
            return path
    return None


def download_release(root: Union[str, Path], config: Optional[DownloadConfig] = None, *,
                     status_file: Optional[Union[str, Path]] = None,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> DownloadSummary:
    """Download the posters and actor photos of the raw release in `root`.

    Args:
        root: the folder with `meta.csv` (and `actors.csv`); images go to `posters/` and `actors/`.
        config: see `DownloadConfig`.
        status_file: where the status of every row goes; see `default_status_file`.
        sleep: waits between attempts (tests pass one that records instead of waiting).

    Returns:
        a `DownloadSummary`.

    Raises:
        DownloadError: if `root` is not a raw release.

    Example:
        >>> summary = download_release("mpds_raw", DownloadConfig(workers=32, shard=(0, 4)))  # doctest: +SKIP
    """
    config = config or DownloadConfig()
    root = Path(root)
    try:
        tasks = plan_downloads(root, posters=config.posters, actors=config.actors)
    except RawFormatError as error:
        raise DownloadError(str(error)) from error
    if config.shard is not None:
        index, count = config.shard
        tasks = [task for task in tasks if shard_of(task, count) == index]
    status_path = Path(status_file) if status_file else default_status_file(root, config.shard)
    return asyncio.run(_run(root, tasks, config, status_path, sleep))


async def _run(root: Path, tasks: list[Task], config: DownloadConfig, status_path: Path, sleep) -> DownloadSummary:
    # 1. What earlier runs did, and what is left.
    lines = _status_lines(status_path)
    summary = DownloadSummary(status_file=status_path)
    todo = []
    for task in tasks:
        if task.skip:
            lines[task.key] = _line(task.entry("skipped", *task.skip))
            summary.counts[("skipped", task.skip[0])] += 1
        elif (path := _on_disk(root, task, config.min_bytes)) is not None:
            previous = json.loads(lines[task.key]) if task.key in lines else {}
            if not (previous.get("status") in DONE_STATUSES and previous.get("url") == task.url):
                lines[task.key] = _line(task.entry("exists", num_bytes=path.stat().st_size))
            summary.counts[("on disk before", None)] += 1
        else:
            stale = root / (task.file + _TEMP_SUFFIX)
            if stale.exists():  # left by a run that was killed while writing it
                stale.unlink()
            todo.append(task)
    _write_status(status_path, tasks, lines)

    # 2. Fetch, validate and store, appending each result to the status file as it comes.
    downloader = Downloader(root, config, sleep=sleep)
    queue: asyncio.Queue = asyncio.Queue()
    for task in todo:
        queue.put_nowait(task)
    started = time.perf_counter()
    progress = tqdm(total=len(todo), unit="img", desc="download", disable=not config.progress or None,
                    dynamic_ncols=True)
    status_handle = open(status_path, "a", encoding="utf-8")
    status_lock = threading.Lock()

    def append(entry: dict) -> bool:
        """Add a line to the status file (from any thread); False once the run is closing."""
        with status_lock:
            if status_handle.closed:
                return False
            lines[entry["key"]] = line = _line(entry)
            status_handle.write(line + "\n")
            status_handle.flush()
            return True

    def store(task: Task, fetched: _Fetched) -> dict:
        entry, temporary = downloader.store(task, fetched)
        # The line is written before the rename: a kill in between leaves an `ok` line without its
        # file, which the next run downloads again, never a file without its line.
        if append(entry) and temporary is not None:
            os.replace(temporary, root / task.file)
        return entry

    def count(entry: dict) -> None:
        summary.counts[(entry["status"], entry["reason"])] += 1
        summary.num_bytes += entry["bytes"] or 0
        summary.fetched += 1
        progress.update(1)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                fetched = await downloader.fetch(session, task.url)
            except _Failure as failure:
                entry = task.entry("failed", failure.reason, failure.detail, None, failure.attempts)
            except Exception as error:  # a fault no reason above names; the row is still accounted for
                entry = task.entry("failed", "unexpected_error", f"{type(error).__name__}: {error}", None, 1)
            else:
                # Validation decodes the image and the file is written and renamed: all off the event loop.
                count(await asyncio.to_thread(store, task, fetched))
                continue
            append(entry)
            count(entry)

    try:
        async with downloader.session() as session:
            await asyncio.gather(*(worker(session) for _ in range(min(config.workers, max(1, len(todo))))))
    finally:
        progress.close()
        with status_lock:  # a thread still storing after an interruption leaves its `.part` for the next run
            status_handle.close()
            summary.seconds = time.perf_counter() - started
            # 3. One line per row, in input order.
            _write_status(status_path, tasks, lines)
    return summary


def _line(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False)
