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

# With `--format webdataset` every config is written as tar shards (`datasets` reads a whole repo
# with one builder, so formats cannot be mixed). A sample is `<key>.jpg` (when it has an image)
# plus `<key>.json` with the other columns; `datasets` adds `__key__` and `__url__`. Actors
# become one sample per photo (key `<id>_<k>`, `photo` = k), since a sample holds one image.
# These features are declared in the card so that `datasets` guesses nothing.


def webdataset_features(config: str) -> Features:
    """The features `datasets` reads from a WebDataset tar of `config`."""
    fields = {"__key__": Value("string"), "__url__": Value("string")}
    if config == "posters":
        fields["jpg"] = Image()
        fields["json"] = {name: feature for name, feature in POSTERS.items() if name != "image"}
    elif config == "actors":
        fields["jpg"] = Image()
        fields["json"] = {**{name: feature for name, feature in ACTORS.items() if name != "images"},
                          "photo": Value("int64")}
    elif config == "meta":
        fields["json"] = dict(META)
    else:
        raise ValueError(f"unknown MPDS config {config!r}; expected one of {CONFIG_NAMES}")
    return Features(fields)


def webdataset_samples(config: str, example: dict):
    """The WebDataset samples of one example: `{"__key__", "jpg"?, "json"}` dicts."""
    if config == "posters":
        yield {"__key__": str(example["id"]), "jpg": example["image"]["bytes"],
               "json": {name: value for name, value in example.items() if name != "image"}}
    elif config == "actors":
        base = {name: value for name, value in example.items() if name != "images"}
        if not example["images"]:
            yield {"__key__": str(example["id"]), "json": {**base, "photo": None}}
        for k, photo in enumerate(example["images"]):
            yield {"__key__": f"{example['id']}_{k}", "jpg": photo["bytes"], "json": {**base, "photo": k}}
    else:
        yield {"__key__": str(example["id"]), "json": example}
