"""The shape of each MPDS config, declared once for the builder, the hub layout and the card."""

from datasets import Features, Image, List, Value

CONFIG_NAMES = ("posters", "actors", "meta")

CAST_MEMBER = {"id": Value("int64"), "name": Value("string"), "url": Value("string")}

POSTERS = Features(
    {
        "id": Value("int64"),
        "image": Image(),
        "title": Value("string"),
        "genres": List(Value("string")),
        "actors": List(CAST_MEMBER),
        "synopsis": Value("string"),
        "visual_prompt": Value("string"),
        "synopsis_prompt": Value("string"),
        "prompt": Value("string"),
        "caption": Value("string"),
        "movie_url": Value("string"),
        "poster_url": Value("string"),
    }
)

ACTORS = Features(
    {
        "id": Value("int64"),
        "name": Value("string"),
        "url": Value("string"),
        "images": List(Image()),
        "movie_ids": List(Value("int64")),
    }
)

META = Features(
    {
        "id": Value("int64"),
        "title": Value("string"),
        "genres": List(Value("string")),
        "actors": List(CAST_MEMBER),
        "synopsis": Value("string"),
        "movie_url": Value("string"),
        "poster_url": Value("string"),
    }
)

FEATURES = {"posters": POSTERS, "actors": ACTORS, "meta": META}

# With `--format webdataset` the posters config is written as tar shards: each sample is
# `<key>.jpg` plus `<key>.json` holding the other columns, and `datasets` adds `__key__` and
# `__url__`. These features are declared in the card so that `datasets` guesses nothing.
# `actors` (several photos a row) and `meta` (text only) stay Parquet in either format.
WEBDATASET_CONFIGS = ("posters",)


def webdataset_features(config: str) -> Features:
    """The features `datasets` reads from a WebDataset tar of `config`."""
    if config not in WEBDATASET_CONFIGS:
        raise ValueError(f"only {WEBDATASET_CONFIGS} are written as WebDataset tars, not {config!r}")
    columns = {name: feature for name, feature in FEATURES[config].items() if name != "image"}
    return Features({"__key__": Value("string"), "__url__": Value("string"), "jpg": Image(), "json": columns})
