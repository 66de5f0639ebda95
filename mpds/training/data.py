"""Training examples streamed from MPDS, cut into batches that resume exactly where a checkpoint left them.

Posters come from the `posters` config with `datasets.load_dataset(..., streaming=True)`: one genre split per
`--genres` entry (a poster in several of them is read once), divided between processes with
`datasets.distributed.split_dataset_by_node`, then shuffled once with `--seed` and cut to `--max_train_samples`
(the same posters for the same seed and number of processes). Every epoch reads the same samples in the same order,
which is what makes the latent cache and exact resumption work.
Actor photos come from the `actors` config (small: read whole), one example per photo.
"""

from __future__ import annotations

import io
import itertools
import logging
import random
from typing import Callable, Iterator, Optional

import numpy as np
import PIL.Image
import torch

from .errors import TrainingError
from .models import actor_token

logger = logging.getLogger(__name__)

# Prompts of the actor photos; `{}` is the actor's token.
ACTOR_TEMPLATES = (
    "a photo of {}",
    "a portrait of {}",
    "a close-up photo of {}",
    "a movie still of {}",
    "a headshot of {}",
    "a cropped photo of {}",
)


def _genre_key(genre: str) -> str:
    from mpds.data.parsing import split_name

    return split_name(genre)


def poster_stream(args, process_index: int = 0, num_processes: int = 1):
    """The `posters` examples this process trains on, as a `datasets.IterableDataset` (images not decoded).

    Raises:
        TrainingError: for an unknown or empty genre split.
    """
    import datasets
    from datasets.distributed import split_dataset_by_node

    split_infos = _split_infos(args.dataset, "posters", args.dataset_revision)
    if not any(split_infos.values()) and None not in split_infos.values():
        raise TrainingError(f"The posters config of {args.dataset} is empty: no poster to train on.")
    wanted = [_genre_key(genre) for genre in args.genres] or ["train"]
    unknown = [name for name in wanted if name not in split_infos]
    if unknown:
        raise TrainingError(
            f"{args.dataset} has no poster split(s) {', '.join(unknown)}; the genre splits are "
            f"{', '.join(sorted(name for name in split_infos if name != 'train'))}."
        )
    empty = [name for name in wanted if split_infos[name] == 0]
    if empty:
        raise TrainingError(f"The poster split(s) {', '.join(empty)} of {args.dataset} are empty: "
                            "no poster to train on.")

    streams = []
    for k, name in enumerate(wanted):
        stream = datasets.load_dataset(args.dataset, "posters", split=name, streaming=True,
                                       revision=args.dataset_revision)
        stream = stream.cast_column("image", datasets.Image(decode=False))
        earlier = set(wanted[:k])
        if earlier:  # a poster of several chosen genres is read from the first of them only
            stream = stream.filter(lambda example, earlier=earlier: not any(_genre_key(g) in earlier
                                                                             for g in example["genres"]))
        streams.append(stream)
    stream = streams[0] if len(streams) == 1 else datasets.concatenate_datasets(streams)
    return split_dataset_by_node(stream, rank=process_index, world_size=num_processes)


def _buffer_shuffled(examples: Iterator[dict], buffer_size: int, rng: random.Random) -> Iterator[dict]:
    """Examples in a random order drawn from `rng`, holding at most `buffer_size` of them at a time."""
    buffer = []
    for example in examples:
        if len(buffer) < buffer_size:
            buffer.append(example)
            continue
        k = rng.randrange(buffer_size)
        yield buffer[k]
        buffer[k] = example
    rng.shuffle(buffer)
    yield from buffer


def _split_infos(dataset: str, config: str, revision: Optional[str]) -> dict[str, Optional[int]]:
    """{split name: number of examples, or None when the dataset does not say}."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(dataset, config, revision=revision)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise TrainingError(f"Cannot read the {config!r} config of the dataset {dataset!r}: {error}") from error
    if builder.info.splits:
        return {name: info.num_examples for name, info in builder.info.splits.items()}
    return {name: None for name in datasets.get_dataset_split_names(dataset, config, revision=revision)}


def actor_examples(args, process_index: int = 0, num_processes: int = 1):
    """(actor names, this process's photo examples as a map-style `datasets.Dataset` with `id`, `name`, `image`).

    Raises:
        TrainingError: for an unknown actor or an actor with no photo.
    """
    import datasets
    from datasets.distributed import split_dataset_by_node

    actors = datasets.load_dataset(args.dataset, "actors", split="train", revision=args.dataset_revision)
    if len(actors) == 0:
        raise TrainingError(f"The actors config of {args.dataset} is empty: no actor to train.")
    if args.actors:
        by_key = {}
        for index, (actor_id, name) in enumerate(zip(actors["id"], actors["name"])):
            by_key[str(actor_id)] = index
            by_key[name.strip().lower()] = index
        unknown = [actor for actor in args.actors if actor.strip().lower() not in by_key]
        if unknown:
            raise TrainingError(f"No actor {', '.join(map(repr, unknown))} in {args.dataset}; give ids or names "
                                f"from its actors config (e.g. {actors[0]['id']} or {actors[0]['name']!r}).")
        actors = actors.select(sorted({by_key[actor.strip().lower()] for actor in args.actors}))
    actors = actors.cast_column("images", datasets.List(datasets.Image(decode=False)))
    without_photos = [f"{row['name']} (id {row['id']})" for row in actors if not row["images"]]
    if without_photos:
        raise TrainingError(f"No photo for the actor(s) {', '.join(without_photos)} in {args.dataset}; "
                            "leave them out with --actors, or add their photos and rebuild.")
    names = list(actors["name"])

    def one_row_per_photo(batch):
        rows = {"id": [], "name": [], "image": []}
        for actor_id, name, images in zip(batch["id"], batch["name"], batch["images"]):
            for k, image in enumerate(images):
                rows["id"].append(f"actor-{actor_id}-{k}")
                rows["name"].append(name)
                rows["image"].append(image)
        return rows

    photos = actors.map(one_row_per_photo, batched=True, remove_columns=actors.column_names,
                        features=datasets.Features({"id": datasets.Value("string"), "name": datasets.Value("string"),
                                                    "image": datasets.Image(decode=False)}))
    return names, split_dataset_by_node(photos, rank=process_index, world_size=num_processes)


# ----------------------------------------------------------------------------------------------------------------
# Examples -> tensors
# ----------------------------------------------------------------------------------------------------------------


def load_image(image) -> PIL.Image.Image:
    """An RGB PIL image from a `datasets.Image(decode=False)` value ({"bytes", "path"}) or a PIL image."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    if image.get("bytes"):
        return PIL.Image.open(io.BytesIO(image["bytes"])).convert("RGB")
    return PIL.Image.open(image["path"]).convert("RGB")


def resize_and_crop(image: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """Scale the shorter side to `resolution`, then cut the centred `resolution` square."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = image.resize(size, PIL.Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def to_pixel_values(image: PIL.Image.Image) -> torch.Tensor:
    """(3, H, W) in [-1, 1], the VAE's input range."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# Captions are drawn at least this large, then scaled down: below it, credit lines no longer fit.
MIN_CAPTION_SIZE = 256


def caption_control_image(caption: str, resolution: int, layout: str = "bottom") -> PIL.Image.Image:
    """The ControlNet input for a poster: its `caption` column (title, then credit lines) rendered and Canny-edged.

    A caption whose credits do not fit the poster even at the smallest font is drawn with its title alone.
    """
    from mpds.pipeline import PosterCaption, render_caption

    lines = [line.strip() for line in (caption or "").split("\n") if line.strip()]
    title, credits = (lines[0], tuple(lines[1:])) if lines else ("", ())
    size = max(resolution, MIN_CAPTION_SIZE)
    try:
        edges = render_caption(PosterCaption(title, credits=credits, layout=layout), size, size).control_image
    except ValueError:
        logger.warning(f"The caption {caption!r} does not fit a {size}px poster; training on its title alone.")
        edges = render_caption(PosterCaption(title, layout=layout), size, size).control_image
    if size != resolution:
        edges = edges.resize((resolution, resolution), PIL.Image.Resampling.BOX)
    return edges


class Collator:
    """Turns a list of examples into a batch.

    A batch holds `ids`, `input_ids` (the prompts, tokenized), `pixel_values` (only of the examples missing from
    `cache`: their images are not even decoded otherwise), `missing` (their positions), and for the controlnet task
    `conditioning_pixel_values` (the rendered caption's edges, in [0, 1]).
    """

    def __init__(self, task: str, tokenizer, resolution: int, cache=None, caption_layout: str = "bottom"):
        self.task, self.tokenizer, self.resolution = task, tokenizer, resolution
        self.cache, self.caption_layout = cache, caption_layout

    def __call__(self, examples: list[dict]) -> dict:
        ids = [str(example["id"]) for example in examples]
        prompts = [example["prompt"] for example in examples]
        missing = [k for k, key in enumerate(ids) if self.cache is None or not self.cache.has(key)]
        batch = {
            "ids": ids,
            "prompts": prompts,
            "input_ids": self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                        truncation=True, return_tensors="pt").input_ids,
            "missing": missing,
            "pixel_values": torch.stack([to_pixel_values(resize_and_crop(load_image(examples[k]["image"]),
                                                                         self.resolution)) for k in missing])
            if missing else None,
        }
        if self.task == "controlnet":
            edges = [caption_control_image(example["caption"], self.resolution, self.caption_layout)
                     for example in examples]
            batch["conditioning_pixel_values"] = torch.stack(
                [torch.from_numpy(np.asarray(edge, dtype=np.float32) / 255.0).permute(2, 0, 1) for edge in edges]
            )
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Resumable batches
# ----------------------------------------------------------------------------------------------------------------


class BatchStream:
    """Endless batches, epoch after epoch, whose position is part of the checkpoint (`state_dict`).

    `read_epoch(epoch, skip)` returns the examples of an epoch after the first `skip` ones; the same epoch must always
    give the same examples. After `load_state_dict`, iteration continues at the batch after the last one handed out
    before the checkpoint. `seen_ids` records the ids handed out in the first epoch (for `--save_sample_ids`).
    """

    def __init__(self, read_epoch: Callable[[int, int], Iterator[dict]], collate: Callable, batch_size: int,
                 describe: str = "the dataset"):
        self.read_epoch, self.collate, self.batch_size, self.describe = read_epoch, collate, batch_size, describe
        self.epoch, self.batches_in_epoch = 0, 0
        self.seen_ids: list[str] = []

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batches_in_epoch = int(state["epoch"]), int(state["batches_in_epoch"])

    def __iter__(self) -> Iterator[dict]:
        while True:
            examples, handed_out = [], self.batches_in_epoch
            for example in self.read_epoch(self.epoch, self.batches_in_epoch * self.batch_size):
                examples.append(example)
                if len(examples) == self.batch_size:
                    yield self._hand_out(examples)
                    examples = []
            if examples:
                yield self._hand_out(examples)
            if self.batches_in_epoch == 0 and handed_out == 0:
                raise TrainingError(f"No training example reached this process from {self.describe}; the data is "
                                    "empty or smaller than the number of processes.")
            self.epoch, self.batches_in_epoch = self.epoch + 1, 0

    def _hand_out(self, examples: list[dict]) -> dict:
        self.batches_in_epoch += 1
        if self.epoch == 0:
            self.seen_ids.extend(str(example["id"]) for example in examples)
        return self.collate(examples)


def poster_epochs(stream, seed: int, buffer_size: int = 1000, max_samples: Optional[int] = None,
                  process_index: int = 0, num_processes: int = 1) -> Callable[[int, int], Iterator[dict]]:
    """`read_epoch` for posters: this process's stream, shuffled once with `seed`, cut to its share of `max_samples`.

    Every epoch gives the same examples in the same order (images are not decoded, so skipping is cheap). The
    shuffle is written here rather than with `IterableDataset.shuffle`, whose multi-shard reader pauses 5 s at the
    end of every pass over a Parquet stream (a guard for pyarrow's threads), which small epochs would feel.
    """
    limit = None
    if max_samples is not None:  # the processes' shares add up to max_samples
        limit = max_samples // num_processes + (1 if process_index < max_samples % num_processes else 0)

    def read_epoch(epoch: int, skip: int) -> Iterator[dict]:
        examples = _buffer_shuffled(iter(stream), buffer_size, random.Random(seed * 1_000_003 + process_index))
        return itertools.islice(examples, skip, limit)

    return read_epoch


def actor_epochs(photos, actor_names: list[str], seed: int) -> Callable[[int, int], Iterator[dict]]:
    """`read_epoch` for actor photos: a fresh order and prompt template per epoch, both drawn from (`seed`, epoch)."""
    tokens = {name: actor_token(name)[1] for name in actor_names}

    def read_epoch(epoch: int, skip: int) -> Iterator[dict]:
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(range(len(photos)))
        rng.shuffle(order)
        templates = [rng.choice(ACTOR_TEMPLATES) for _ in order]
        for position in range(skip, len(order)):
            row = photos[order[position]]
            yield {"id": row["id"], "image": row["image"], "prompt": templates[position].format(tokens[row["name"]])}

    return read_epoch
