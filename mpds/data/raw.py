"""Reading a raw MPDS release: `meta.csv`, `posters.csv`, `actors.csv` and the image folders.

Every input row comes out either as a record of a config (`posters`, `actors`, `meta`) or as a
`Reject` with its id and reason, so that a build can account for all of them.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import re
import sys
import threading
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

from PIL import Image

from .. import prompts
from .parsing import CellError, clean_text, normalize_header, parse_cast, parse_id, parse_list, parse_url_list, split_name

MIN_IMAGE_BYTES = 5 * 1024
DROPPED_GENRES = ("Adult",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
ALL_SPLIT = "train"

META_COLUMNS = ("id", "movie-url", "title", "genres", "actors", "poster-url", "synopsis")
POSTERS_COLUMNS = ("id", "text")
ACTORS_COLUMNS = ("id", "actors-url", "actors-name", "image-url")
_COLUMN_ALIASES = {
    "name": "actors-name",
    "actor-name": "actors-name",
    "url": "actors-url",
    "actor-url": "actors-url",
    "image-urls": "image-url",
    "cast": "actors",
    "genre": "genres",
    "plot": "synopsis",
    "description": "text",
    "caption": "text",
}
_ACTOR_FILE = re.compile(r"^(\d+)(?:_(\d+))?$")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class RawFormatError(ValueError):
    """The raw release is not laid out as MPDS expects (a missing file or column)."""


@dataclass
class Reject:
    """An input row (or one image of it) left out of a config, and why."""

    config: str
    source: str
    row: int
    id: Optional[int]
    reason: str
    detail: str
    file: Optional[str] = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None or key == "id"}


@dataclass
class Movie:
    id: int
    title: Optional[str]
    genres: list[str]
    cast: list[dict]
    synopsis: Optional[str]
    movie_url: Optional[str]
    poster_url: Optional[str]

    @property
    def splits(self) -> list[str]:
        """`train`, then one split per genre, each once."""
        names = [ALL_SPLIT]
        for genre in self.genres:
            name = split_name(genre)
            if name not in names:
                names.append(name)
        return names


@dataclass
class Scan:
    """What one pass over meta.csv tells before the real work: sizes, duplicates and genres."""

    num_rows: int
    duplicate_rows: set[int] = field(default_factory=set)
    movie_ids: set[int] = field(default_factory=set)
    genre_counts: Counter = field(default_factory=Counter)

    @property
    def genre_splits(self) -> list[str]:
        return sorted({split_name(genre) for genre in self.genre_counts})


def read_csv(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV file as `(row_number, {normalised column: cell})`, row numbers from 1.

    Raises:
        RawFormatError: if a required column is missing.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [_COLUMN_ALIASES.get(normalize_header(name), normalize_header(name)) for name in next(reader)]
        except StopIteration:
            raise RawFormatError(f"{path} is empty: it needs a header row with {', '.join(required)}") from None
        missing = [name for name in required if name not in header]
        if missing:
            raise RawFormatError(f"{path} has no column {', '.join(map(repr, missing))} (its columns: {header})")
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            yield number, dict(zip(header, cells))


def check_image(data: bytes, *, min_bytes: int = MIN_IMAGE_BYTES) -> Optional[tuple[str, str]]:
    """Why an image's bytes are unusable, as `(reason, detail)`, or None when they are fine.

    The image is decoded for real (JPEG at 1/8 scale, which still reads every byte of the scan),
    so truncated and corrupt files are caught without the cost of a full decode.
    """
    problem = size_problem(len(data), min_bytes)
    if problem:
        return problem
    try:
        image = open_image(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return "image_too_large", str(error)
    except Exception as error:  # PIL raises many types for corrupt data; all mean the same here
        return "image_undecodable", f"{type(error).__name__}: {error}"
    with image:
        return decode_problem(image)


def size_problem(size: int, min_bytes: int) -> Optional[tuple[str, str]]:
    """`("image_too_small", detail)` for an image of fewer than `min_bytes` bytes, else None."""
    return ("image_too_small", f"{size} bytes, under the {min_bytes}-byte minimum") if size < min_bytes else None


# `warnings.catch_warnings` swaps the process-wide filter list and is not thread-safe: two threads
# opening images at once could each restore the other's filters, leaving the bomb warning an error for
# the rest of the process, or a warning instead of an error in one thread. Only the header is parsed
# under the lock; decoding is not.
_OPEN_LOCK = threading.Lock()


def open_image(data: bytes) -> Image.Image:
    """`Image.open` on bytes (lazy: the header only), with Pillow's decompression-bomb warning raised
    as `Image.DecompressionBombWarning` instead of printed. Safe to call from several threads.

    Raises:
        Image.DecompressionBombError, Image.DecompressionBombWarning: for too many pixels.
        Exception: whatever Pillow raises for bytes that are no image it knows.
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def decode_problem(image: Image.Image) -> Optional[tuple[str, str]]:
    """Decode an opened image, JPEG at 1/8 scale (every byte of the scan is still entropy-decoded);
    `(reason, detail)` when it is truncated, corrupt or (found while decoding) too large, else None."""
    try:
        if image.format == "JPEG":
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Image.DecompressionBombError as error:
        return "image_too_large", str(error)
    except Exception as error:  # PIL raises many types for corrupt data; all mean the same here
        return "image_undecodable", f"{type(error).__name__}: {error}"
    return None


def _source_name(path: Path) -> str:
    return path.name


def _ordered_map(function, items, threads: int, window: int = 64):
    """`(item, function(item))` in input order, with up to `window` calls running on `threads` threads.

    Image reading and decoding release the GIL, so this overlaps them with CSV parsing and writing.
    """
    if threads <= 1:
        for item in items:
            yield item, function(item)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = deque()
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) >= window:
                item, future = pending.popleft()
                yield item, future.result()
        while pending:
            item, future = pending.popleft()
            yield item, future.result()


@dataclass
class RawRelease:
    """A raw MPDS release on disk.

    Args:
        root: the folder holding `meta.csv`, `posters.csv`, `actors.csv` and the image folders.
        posters_dir: the poster folder inside `root` (`<id>.jpg`).
        actors_dir: the actor-photo folder inside `root` (`<id>.jpg`, `<id>_<k>.jpg` or `<id>/<name>.jpg`).
        min_image_bytes: smaller images are rejected (the paper drops posters under 5 KB).
        dropped_genres: movies of these genres are left out of every config (NSFW).
        count_tokens: counts CLIP tokens to fit the merged prompt; see `mpds.prompts.merge_prompt`.
        io_threads: threads that read and check images ahead of the rows being written.

    Raises:
        RawFormatError: if `meta.csv` is missing.
    """

    root: Union[str, Path]
    posters_dir: str = "posters"
    actors_dir: str = "actors"
    min_image_bytes: int = MIN_IMAGE_BYTES
    dropped_genres: tuple[str, ...] = DROPPED_GENRES
    count_tokens: Optional[Callable[[str], int]] = None
    io_threads: int = 2

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.meta_csv.is_file():
            raise RawFormatError(
                f"{self.root} is not a raw MPDS release: {self.meta_csv.name} is missing "
                f"(expected meta.csv, posters.csv, actors.csv, {self.posters_dir}/ and {self.actors_dir}/)"
            )
        self._dropped = {genre.lower() for genre in self.dropped_genres}

    @property
    def meta_csv(self) -> Path:
        return self.root / "meta.csv"

    @property
    def posters_csv(self) -> Path:
        return self.root / "posters.csv"

    @property
    def actors_csv(self) -> Path:
        return self.root / "actors.csv"

    # -- meta.csv -------------------------------------------------------------------------------

    def scan(self) -> Scan:
        """One pass over meta.csv: row count, later rows repeating an id, ids and genre counts."""
        scan = Scan(num_rows=0)
        for number, row in read_csv(self.meta_csv, ("id",)):
            scan.num_rows = number
            try:
                movie_id = parse_id(row.get("id"))
            except CellError:
                continue
            if movie_id in scan.movie_ids:
                scan.duplicate_rows.add(number)
                continue
            scan.movie_ids.add(movie_id)
            try:
                genres = parse_list(row.get("genres"))
            except CellError:
                continue
            if not self._dropped.intersection(genre.lower() for genre in genres):
                scan.genre_counts.update(genres)
        return scan

    def movies(self, scan: Scan, config: str, rows: Optional[Callable[[int], bool]] = None):
        """Movies of meta.csv as `(row, Movie)`, or `(row, Reject)` for a row the configs leave out.

        Args:
            scan: the result of `scan()` (it names the duplicate rows).
            config: the config the rejects are charged to.
            rows: when given, only the row numbers it accepts are read.
        """
        source = _source_name(self.meta_csv)
        for number, row in read_csv(self.meta_csv, ("id",)):
            if rows is not None and not rows(number):
                continue
            try:
                movie_id = parse_id(row.get("id"))
            except CellError as error:
                yield number, Reject(config, source, number, None, "invalid_id", str(error))
                continue
            if number in scan.duplicate_rows:
                detail = f"id {movie_id} already appears on an earlier row of {source}"
                yield number, Reject(config, source, number, movie_id, "duplicate_id", detail)
                continue
            try:
                movie = Movie(
                    id=movie_id,
                    title=clean_text(row.get("title")),
                    genres=parse_list(row.get("genres")),
                    cast=parse_cast(row.get("actors")),
                    synopsis=clean_text(row.get("synopsis")),
                    movie_url=clean_text(row.get("movie-url")),
                    poster_url=clean_text(row.get("poster-url")),
                )
            except CellError as error:
                yield number, Reject(config, source, number, movie_id, "unreadable_cell", str(error))
                continue
            dropped = sorted(genre for genre in movie.genres if genre.lower() in self._dropped)
            if dropped:
                detail = f"genre {', '.join(dropped)} is excluded from MPDS"
                yield number, Reject(config, source, number, movie_id, "excluded_genre", detail)
                continue
            yield number, movie

    # -- posters.csv ----------------------------------------------------------------------------

    def visual_prompts(self) -> dict[int, str]:
        """posters.csv as `{id: text}`; the first row of a repeated id wins."""
        texts: dict[int, str] = {}
        if not self.posters_csv.is_file():
            return texts
        for _, row in read_csv(self.posters_csv, POSTERS_COLUMNS):
            try:
                movie_id = parse_id(row.get("id"))
            except CellError:
                continue
            text = clean_text(row.get("text"))
            if movie_id not in texts and text:
                texts[movie_id] = text
        return texts

    def unmatched_visual_prompts(self, scan: Scan) -> Iterator[Reject]:
        """Rejects for posters.csv rows that no poster record uses (bad id, repeated id, unknown movie)."""
        if not self.posters_csv.is_file():
            return
        source = _source_name(self.posters_csv)
        seen: set[int] = set()
        for number, row in read_csv(self.posters_csv, POSTERS_COLUMNS):
            try:
                movie_id = parse_id(row.get("id"))
            except CellError as error:
                yield Reject("posters", source, number, None, "invalid_id", str(error))
                continue
            if movie_id in seen:
                yield Reject("posters", source, number, movie_id, "duplicate_id", f"id {movie_id} repeats an earlier row")
            elif movie_id not in scan.movie_ids:
                yield Reject("posters", source, number, movie_id, "unknown_movie", f"no row of meta.csv has id {movie_id}")
            elif not clean_text(row.get("text")):
                yield Reject("posters", source, number, movie_id, "empty_text", "the text cell is empty")
            seen.add(movie_id)

    # -- images ---------------------------------------------------------------------------------

    def poster_path(self, movie_id: int) -> Optional[Path]:
        folder = self.root / self.posters_dir
        for extension in IMAGE_EXTENSIONS:
            path = folder / f"{movie_id}{extension}"
            if path.is_file():
                return path
        return None

    def actor_photo_paths(self) -> dict[int, list[Path]]:
        """Actor photos by actor id, in order: `<id>.jpg`, `<id>_<k>.jpg` by k, then `<id>/*` by name."""
        folder = self.root / self.actors_dir
        found: dict[int, list[tuple[tuple, Path]]] = {}
        if not folder.is_dir():
            return {}
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if entry.is_dir() and entry.name.isdigit():
                for inner in sorted(os.scandir(path), key=lambda item: item.name):
                    if inner.is_file() and Path(inner.name).suffix.lower() in IMAGE_EXTENSIONS:
                        found.setdefault(int(entry.name), []).append(((2, 0, inner.name), Path(inner.path)))
                continue
            match = _ACTOR_FILE.match(path.stem)
            if entry.is_file() and match and path.suffix.lower() in IMAGE_EXTENSIONS:
                order = (0, 0, "") if match.group(2) is None else (1, int(match.group(2)), "")
                found.setdefault(int(match.group(1)), []).append((order, path))
        return {actor_id: [path for _, path in sorted(items)] for actor_id, items in found.items()}

    def read_image(self, path: Path) -> tuple[Optional[bytes], Optional[tuple[str, str]]]:
        """The bytes of an image file and None, or None and `(reason, detail)` when unusable."""
        try:
            data = path.read_bytes()
        except OSError as error:
            return None, ("unreadable_file", str(error))
        problem = check_image(data, min_bytes=self.min_image_bytes)
        return (None, problem) if problem else (data, None)

    # -- records --------------------------------------------------------------------------------

    def poster_example(self, movie: Movie, visual_prompt: Optional[str], image: bytes) -> dict:
        names = [member["name"] for member in movie.cast]
        synopsis = prompts.synopsis_prompt(movie.title, movie.genres, names, movie.synopsis)
        return {
            "id": movie.id,
            "image": {"bytes": image, "path": None},
            "title": movie.title,
            "genres": movie.genres,
            "actors": movie.cast,
            "synopsis": movie.synopsis,
            "visual_prompt": visual_prompt,
            "synopsis_prompt": synopsis,
            "prompt": prompts.merge_prompt(visual_prompt, synopsis, count_tokens=self.count_tokens),
            "caption": prompts.poster_caption(movie.title, names),
            "movie_url": movie.movie_url,
            "poster_url": movie.poster_url,
        }

    @staticmethod
    def meta_example(movie: Movie) -> dict:
        return {
            "id": movie.id,
            "title": movie.title,
            "genres": movie.genres,
            "actors": movie.cast,
            "synopsis": movie.synopsis,
            "movie_url": movie.movie_url,
            "poster_url": movie.poster_url,
        }

    def poster_records(self, scan: Scan, visual_prompts: dict[int, str], rows=None):
        """`(row, example, splits)` for each usable poster, `(row, Reject, None)` for the others."""
        source = _source_name(self.meta_csv)

        def load(item):
            movie = item[1]
            if isinstance(movie, Reject):
                return None, None
            path = self.poster_path(movie.id)
            return (path, *self.read_image(path)) if path else (None, None, None)

        for (number, movie), (path, *loaded) in _ordered_map(load, self.movies(scan, "posters", rows), self.io_threads):
            if isinstance(movie, Reject):
                yield number, movie, None
                continue
            if path is None:
                detail = f"no {self.posters_dir}/{movie.id}.jpg (nor .jpeg, .png, .webp)"
                yield number, Reject("posters", source, number, movie.id, "missing_image", detail), None
                continue
            image, problem = loaded
            if problem:
                file = str(path.relative_to(self.root))
                yield number, Reject("posters", source, number, movie.id, problem[0], problem[1], file), None
                continue
            yield number, self.poster_example(movie, visual_prompts.get(movie.id), image), movie.splits

    def meta_records(self, scan: Scan):
        """`(row, example)` for each movie of meta.csv, `(row, Reject)` for rows left out."""
        for number, movie in self.movies(scan, "meta"):
            yield number, movie if isinstance(movie, Reject) else self.meta_example(movie)

    def actor_records(self, scan: Scan):
        """`(row, example)` per actor of actors.csv (rows of one id merge), `(row, Reject)` for the rest.

        A photo that is missing or unusable is reported as a Reject with its file; the actor stays,
        with the photos that are fine, so its movies are still linked.
        """
        if not self.actors_csv.is_file():
            return
        source = _source_name(self.actors_csv)
        actors: dict[int, dict] = {}
        first_row: dict[int, int] = {}
        for number, row in read_csv(self.actors_csv, ("id",)):
            try:
                actor_id = parse_id(row.get("id"))
            except CellError as error:
                yield number, Reject("actors", source, number, None, "invalid_id", str(error))
                continue
            actor = actors.setdefault(actor_id, {"id": actor_id, "name": None, "url": None, "image_urls": []})
            first_row.setdefault(actor_id, number)
            actor["name"] = actor["name"] or clean_text(row.get("actors-name"))
            actor["url"] = actor["url"] or clean_text(row.get("actors-url"))
            try:
                actor["image_urls"].extend(parse_url_list(row.get("image-url")))
            except CellError as error:
                yield number, Reject("actors", source, number, actor_id, "unreadable_cell", str(error))
        movie_ids = self._movies_by_actor(scan, set(actors))
        photos = self.actor_photo_paths()
        for actor_id, actor in actors.items():
            number = first_row[actor_id]
            images = []
            for path in photos.get(actor_id, []):
                image, problem = self.read_image(path)
                if problem:
                    file = str(path.relative_to(self.root))
                    yield number, Reject("actors", source, number, actor_id, problem[0], problem[1], file)
                else:
                    images.append({"bytes": image, "path": None})
            yield number, {
                "id": actor_id,
                "name": actor["name"],
                "url": actor["url"],
                "images": images,
                "movie_ids": movie_ids.get(actor_id, []),
            }

    def _movies_by_actor(self, scan: Scan, actor_ids: set[int]) -> dict[int, list[int]]:
        linked: dict[int, list[int]] = {}
        for _, movie in self.movies(scan, "actors"):
            if isinstance(movie, Reject):
                continue
            for member in movie.cast:
                if member["id"] in actor_ids:
                    linked.setdefault(member["id"], []).append(movie.id)
        return linked
