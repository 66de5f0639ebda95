"""Synthetic raw MPDS releases: drawn posters and actor photos, CSVs written the ways the real set writes them.

The embedded sample (`mpds/sample/`) is made by this module, and so are the larger releases of the
benchmarks. Everything is seeded: the same arguments give the same files.

    python -m mpds.testing.synthetic OUT_DIR [--posters 100] [--actors 20] [--no-faults]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GENRES = [
    "Drama", "Comedy", "Crime", "Action", "Horror", "Sci-Fi", "Film-Noir", "Romance", "Thriller",
    "Animation", "Reality-TV", "Talk-Show", "Game-Show", "Documentary", "Adventure", "Mystery",
]
FIRST_NAMES = ["Ava", "Liam", "Mia", "Noah", "Zoe", "Omar", "Lena", "Ivan", "Sofia", "Kenji",
               "Maya", "Hugo", "Nora", "Ravi", "Elsa", "Theo", "Ines", "Marco", "Yara", "Felix"]
LAST_NAMES = ["Stone", "Rivera", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Kowalski", "Hart",
              "Delgado", "Novak", "Reyes", "Fischer", "Khan", "Silva", "Berg", "Costa", "Weber", "Sato"]
TITLE_WORDS = ["Midnight", "Shadow", "River", "Empire", "Silent", "Crimson", "Last", "Golden", "Storm",
               "Garden", "Echo", "Winter", "Iron", "Lost", "City", "Dream", "Wild", "Glass", "Harbor", "Star"]
COLOURS = {"red": (190, 40, 40), "blue": (40, 70, 180), "green": (40, 140, 70), "black": (20, 20, 24),
           "orange": (230, 120, 30), "purple": (110, 50, 150), "teal": (30, 140, 140), "yellow": (225, 195, 50)}
SHAPES = ["circle", "triangle", "stripes", "squares"]
PLOTS = ["A {role} must {goal} before {deadline}.", "Two strangers {goal} in a city that never sleeps.",
         "When the {thing} vanishes, a {role} uncovers a secret.", "A family tries to {goal} after the {thing} returns."]
ROLES = ["detective", "pilot", "teacher", "young thief", "retired boxer", "scientist"]
GOALS = ["find the truth", "save the town", "escape the island", "win the final game", "stop a heist"]
DEADLINES = ["dawn", "the storm breaks", "the last train leaves", "winter ends"]
THINGS = ["painting", "lighthouse", "letter", "comet", "old map"]


@dataclass
class SyntheticPoster:
    """What was drawn on a poster, which is also what its description says."""

    background: str
    accent: str
    shape: str
    title: str
    credits: list[str]

    def description(self) -> str:
        return (f"a movie poster with a {self.background} background, {self.accent} {self.shape}, "
                f"the title {self.title} in large white letters and the names of the cast at the bottom")


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_poster(poster: SyntheticPoster, size=(200, 300), seed: int = 0) -> Image.Image:
    """A poster-like picture: a textured gradient, a shape, the title large and the credits small."""
    width, height = size
    rng = np.random.default_rng(seed)
    top = np.array(COLOURS[poster.background], dtype=np.float32)
    ramp = np.linspace(1.0, 0.45, height, dtype=np.float32)[:, None, None]
    pixels = top[None, None, :] * ramp + rng.normal(0, 10, (height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    accent = COLOURS[poster.accent]
    cx, cy = width // 2, int(height * 0.45)
    radius = width // 4
    if poster.shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=accent)
    elif poster.shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=accent)
    elif poster.shape == "stripes":
        for k in range(0, width, 24):
            draw.rectangle([k, cy - radius, k + 10, cy + radius], fill=accent)
    else:
        for k in range(4):
            x, y = int(rng.integers(0, width - 40)), int(rng.integers(height // 5, height // 2))
            draw.rectangle([x, y, x + 40, y + 40], fill=accent)
    title_font = _font(max(12, width // 10))
    draw.multiline_text((width // 2, int(height * 0.12)), poster.title.replace(" ", "\n", 1), font=title_font,
                        fill=(255, 255, 255), anchor="ma", align="center")
    if poster.credits:
        draw.text((width // 2, int(height * 0.9)), "  ".join(poster.credits), font=_font(max(8, width // 24)),
                  fill=(235, 235, 235), anchor="mm")
    return image


def draw_face(seed: int, size=(160, 160)) -> Image.Image:
    """An actor 'photo': a head and shoulders on a textured background, different for each seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(60, 200, 3)
    pixels = base[None, None, :] + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    skin = tuple(int(v) for v in rng.integers(120, 240, 3))
    draw.ellipse([width * 0.3, height * 0.15, width * 0.7, height * 0.6], fill=skin)
    draw.rectangle([width * 0.2, height * 0.62, width * 0.8, height], fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    return image


def jpeg_bytes(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _cell(value, style: int) -> str:
    """A list or dict cell written the three ways the real CSVs use."""
    if not value:
        return ["", "[]", ""][style % 3]
    if style % 3 == 0:
        return repr(value)  # Python literal
    if style % 3 == 1:
        return json.dumps(value)
    if isinstance(value, dict):
        return " | ".join(f"{name}: {url}" for name, url in value.items())
    return "|".join(value)


def make_raw_release(
    out_dir,
    num_posters: int = 100,
    num_actors: int = 20,
    *,
    seed: int = 0,
    faults: bool = True,
    poster_size=(200, 300),
    distinct_images: Optional[int] = None,
) -> Path:
    """Write a raw MPDS release into `out_dir` and return its path.

    Args:
        num_posters: rows of meta.csv.
        num_actors: rows of actors.csv; each actor has 3 to 5 photos.
        faults: add the real set's faults: rows without genres, actors or synopsis, a poster under
            5 KB, a corrupt poster, a missing poster, an Adult title, a repeated id, a posters.csv
            row with no movie, and an unusable actor photo.
        distinct_images: draw only this many posters and reuse their bytes (large benchmark sets).
    """
    out = Path(out_dir)
    (out / "posters").mkdir(parents=True, exist_ok=True)
    (out / "actors").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    actors = []
    for index in range(num_actors):
        actor_id = 100 + index * 7
        name = f"{FIRST_NAMES[index % len(FIRST_NAMES)]} {LAST_NAMES[(index * 5) % len(LAST_NAMES)]}"
        actors.append({"id": actor_id, "name": name, "url": f"https://www.imdb.com/name/nm{actor_id:07d}/"})
    drawn: list[bytes] = []
    meta_rows, poster_rows = [], []
    for index in range(num_posters):
        movie_id = 1000 + index * 3
        genres = rng.sample(GENRES, rng.randint(1, 3))
        cast = rng.sample(actors, min(len(actors), rng.randint(1, 4))) if actors else []
        title = " ".join(rng.sample(TITLE_WORDS, rng.randint(1, 3)))
        plot = rng.choice(PLOTS).format(role=rng.choice(ROLES), goal=rng.choice(GOALS),
                                        deadline=rng.choice(DEADLINES), thing=rng.choice(THINGS))
        if faults and index % 29 == 5:
            genres = []
        if faults and index % 13 == 3:
            cast = []
        if faults and index % 6 == 1:
            plot = ""
        poster = SyntheticPoster(rng.choice(list(COLOURS)), rng.choice(list(COLOURS)), rng.choice(SHAPES),
                                 title, [member["name"] for member in cast[:3]])
        if distinct_images is None or len(drawn) < distinct_images:
            data = jpeg_bytes(draw_poster(poster, poster_size, seed=seed * 100003 + index))
            drawn.append(data)
        else:
            data = drawn[index % len(drawn)]
        (out / "posters" / f"{movie_id}.jpg").write_bytes(data)
        meta_rows.append({
            "id": movie_id,
            "movie-url": f"https://www.imdb.com/title/tt{movie_id:07d}/",
            "title": title,
            "genres": _cell(genres, index),
            "actors": _cell({member["name"]: member["url"] for member in cast}, index + 1),
            "poster-url": f"https://img.example.org/posters/{movie_id}.jpg",
            "synopsis": plot,
        })
        poster_rows.append({"id": movie_id, "text": poster.description()})
    if faults and num_posters >= 10:
        _add_faults(out, meta_rows, poster_rows)
    photo_rows = []
    for index, actor in enumerate(actors):
        photos = [jpeg_bytes(draw_face(seed * 7919 + actor["id"] * 10 + k)) for k in range(3 + index % 3)]
        urls = [f"https://img.example.org/actors/{actor['id']}_{k}.jpg" for k in range(len(photos))]
        for k, data in enumerate(photos):
            style = index % 3  # the three file namings the raw layout accepts
            if style == 0:
                name = f"{actor['id']}.jpg" if k == 0 else f"{actor['id']}_{k}.jpg"
                (out / "actors" / name).write_bytes(data)
            elif style == 1:
                (out / "actors" / f"{actor['id']}_{k}.jpg").write_bytes(data)
            else:
                (out / "actors" / str(actor["id"])).mkdir(exist_ok=True)
                (out / "actors" / str(actor["id"]) / f"still-{k}.jpg").write_bytes(data)
        # Some actors come as one row per photo, others as one row with a list of URLs.
        if index % 2:
            photo_rows += [{"id": actor["id"], "actors-url": actor["url"], "actors name": actor["name"],
                            "image-url": url} for url in urls]
        else:
            photo_rows.append({"id": actor["id"], "actors-url": actor["url"], "actors name": actor["name"],
                               "image-url": json.dumps(urls)})
    if faults and actors:
        (out / "actors" / f"{actors[0]['id']}_9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 400)
    _write_csv(out / "meta.csv", ["id", "movie-url", "title", "genres", "actors", "poster-url", "synopsis"], meta_rows)
    _write_csv(out / "posters.csv", ["id", "text"], poster_rows)
    _write_csv(out / "actors.csv", ["id", "actors-url", "actors name", "image-url"], photo_rows)
    return out


def _add_faults(out: Path, meta_rows: list, poster_rows: list) -> None:
    """The faults of the real set, on fixed rows so that tests can name them."""
    tiny = meta_rows[1]["id"]
    (out / "posters" / f"{tiny}.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (40, 60), (200, 30, 30))))
    corrupt = meta_rows[2]["id"]
    data = (out / "posters" / f"{corrupt}.jpg").read_bytes()
    (out / "posters" / f"{corrupt}.jpg").write_bytes(data[: len(data) // 2])
    missing = meta_rows[3]["id"]
    (out / "posters" / f"{missing}.jpg").unlink()
    adult = dict(meta_rows[4], genres=repr(["Adult", "Drama"]))
    meta_rows[4] = adult
    meta_rows.append(dict(meta_rows[6], title="A Repeated Row"))
    meta_rows.append(dict(meta_rows[7], id="not-a-number"))
    poster_rows.append({"id": 999999, "text": "a poster of a movie that meta.csv does not list"})


def _write_csv(path: Path, columns: list, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--posters", type=int, default=100)
    parser.add_argument("--actors", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args(argv)
    path = make_raw_release(args.out_dir, args.posters, args.actors, seed=args.seed, faults=not args.no_faults)
    print(f"wrote a synthetic raw MPDS release to {path}")


if __name__ == "__main__":
    main()
