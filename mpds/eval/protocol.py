"""The evaluation protocol: prompts -> posters for each model (fixed seeds) -> every metric -> one results dict."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .clip_score import DEFAULT_CLIP_MODEL, clip_score
from .fid import CLIPFeatures, InceptionFeatures, fid
from .likeness import DEFAULT_LIKENESS_MODEL, actor_likeness
from .models import best_device, load_clip
from .ocr import TesseractEngine, text_legibility
from .pickscore import DEFAULT_PICKSCORE_MODEL, pickscore_win_rates

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class PromptRecord:
    """One evaluation prompt.

    Attributes:
        prompt: the text prompt. caption: the text the poster should show ("Title\\nName, Name"), or "".
        seed: the generator seed for this prompt. actor_photos: reference photos of the actor (paths or images).
        key: a name for the poster file.
    """

    prompt: str
    caption: str = ""
    seed: int = 0
    actor_photos: list = field(default_factory=list)
    key: str = ""


def read_prompts(path: str | os.PathLike, seed: int = 0) -> list[PromptRecord]:
    """Records from a JSON Lines file: `{"prompt": ..., "caption"?: ..., "seed"?: ..., "actor_photos"?: [...]}`.

    A record without a seed gets `seed + its line index`.

    Raises:
        ValueError: for a line without a "prompt".
    """
    records = []
    for index, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        item = json.loads(line)
        if not isinstance(item, dict) or not item.get("prompt"):
            raise ValueError(f"{path}, line {index + 1}: each line must be a JSON object with a \"prompt\".")
        records.append(PromptRecord(
            prompt=item["prompt"], caption=item.get("caption") or "", seed=int(item.get("seed", seed + len(records))),
            actor_photos=list(item.get("actor_photos") or []), key=str(item.get("key", f"{len(records):04d}")),
        ))
    return records


def prompts_from_dataset(path: str | os.PathLike, split: str = "train", n: int | None = 100, seed: int = 0):
    """The first `n` posters of an MPDS split as records, and those posters' images as the FID reference.

    Actor photos come from the `actors` config: each poster's first billed actor that has photos.

    Returns:
        (records, reference_images).
    """
    from mpds.data import load_dataset

    posters = load_dataset("posters", split=split, path=os.fspath(path))
    if n is not None:
        posters = posters.select(range(min(n, len(posters))))
    actors = load_dataset("actors", split="train", path=os.fspath(path))
    photos = {row["id"]: row["images"] for row in actors if row["images"]}
    records, reference = [], []
    for index, row in enumerate(posters):
        actor_photos = next((photos[actor["id"]] for actor in row["actors"] if actor["id"] in photos), [])
        records.append(PromptRecord(row["prompt"], row["caption"] or "", seed + index, list(actor_photos), str(row["id"])))
        reference.append(row["image"])
    return records, reference


def caption_of(text: str):
    """A `PosterCaption` from MPDS' caption string: the title on the first line, names on the second."""
    from mpds.pipeline import PosterCaption

    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    credits = tuple(name.strip() for name in lines[1].split(",") if name.strip()) if len(lines) > 1 else ()
    return PosterCaption(lines[0], credits=credits)


def image_folder(path: str | os.PathLike) -> list[Path]:
    """The images of a folder, sorted by name."""
    return sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def readable_images(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Split image paths into those that decode and those that do not (truncated or not images)."""
    from PIL import Image

    good, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.convert("RGB")
            good.append(path)
        except (OSError, ValueError):
            bad.append(path)
    return good, bad


def is_generated_folder(path: str | os.PathLike) -> bool:
    """True for a local folder of images that is not a pipeline (no model_index.json)."""
    path = Path(path)
    return path.is_dir() and not (path / "model_index.json").exists() and bool(image_folder(path))


def generate_posters(
    pipeline,
    records: Sequence[PromptRecord],
    out: str | os.PathLike,
    *,
    num_inference_steps: int = 30,
    height: int | None = None,
    width: int | None = None,
    device: str | None = None,
) -> list[Path]:
    """Generate one poster per record with `torch.Generator(device).manual_seed(record.seed)`; save them in `out`.

    Args:
        pipeline: an `MPDSPosterPipeline`, or a bundle id or folder to load one from (safetensors).

    Returns:
        The poster paths, `out/<key>.png`, in the order of `records`.
    """
    import torch

    from mpds.pipeline import MPDSPosterPipeline

    device = device or best_device()
    if isinstance(pipeline, (str, os.PathLike)):
        dtype = {"torch_dtype": torch.float16} if device.startswith("cuda") else {}
        pipeline = MPDSPosterPipeline.from_pretrained(os.fspath(pipeline), use_safetensors=True, **dtype)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        caption = caption_of(record.caption) if pipeline.controlnet is not None else None
        image = pipeline(
            record.prompt, caption=caption, height=height, width=width, num_inference_steps=num_inference_steps,
            generator=torch.Generator(device).manual_seed(record.seed),
        ).images[0]
        path = out / f"{record.key}.png"
        image.save(path)
        paths.append(path)
    return paths


def evaluate_posters(
    posters: Mapping[str, Sequence],
    records: Sequence[PromptRecord],
    reference: Sequence | None = None,
    *,
    clip_model: str | os.PathLike | tuple = DEFAULT_CLIP_MODEL,
    pickscore_model: str | os.PathLike | tuple = DEFAULT_PICKSCORE_MODEL,
    likeness_model: str | os.PathLike | tuple | None = DEFAULT_LIKENESS_MODEL,
    fid_extractor: Callable | None = None,
    ocr_engine: Callable | None = None,
    batch_size: int = 16,
    device: str | None = None,
    kid_subset_size: int = 1000,
) -> dict:
    """Every metric for every model's posters (same prompts, same order).

    Args:
        posters: model name -> its posters, one per record.
        records: the prompts (and captions, actor photos) the posters were made from.
        reference: real posters for FID/KID; None skips them.
        clip_model, pickscore_model, likeness_model: model ids, folders or `(model, processor)` pairs;
            `likeness_model=None` skips actor likeness.
        fid_extractor: `InceptionFeatures()` by default.
        ocr_engine: `TesseractEngine()` by default; pass `False` to skip legibility.

    Returns:
        `{"n", "models": {name: {metric: value}}, "details": {...}, "settings": {...}}`.

    Raises:
        ValueError: with no models or no prompts, or when a model's posters do not match the prompts one to one.
    """
    if not posters or not records:
        raise ValueError(f"nothing to evaluate: {len(posters)} models and {len(records)} prompts.")
    for name, images in posters.items():
        if len(images) != len(records):
            raise ValueError(f"model {name!r} has {len(images)} posters for {len(records)} prompts.")
    prompts = [record.prompt for record in records]
    device = device or best_device()
    models: dict[str, dict] = {name: {} for name in posters}
    details: dict[str, dict] = {name: {} for name in posters}
    settings: dict = {"n": len(records), "device": device}

    clip = load_clip(clip_model, device)
    for name, images in posters.items():
        result = clip_score(images, prompts, clip, batch_size=batch_size, device=device)
        models[name]["clip_cosine"], models[name]["clipscore"] = result["clip_cosine"], result["clipscore"]
        details[name]["clip_cosine"] = result["per_image_cosine"]
    settings["clip_score"] = {"model": _name(clip_model), "weight": result["weight"]}

    if reference is not None:
        extractor = fid_extractor or InceptionFeatures(device=device, batch_size=batch_size)
        reference_features = extractor(list(reference))
        for name, images in posters.items():
            result = fid(images, reference_features, extractor, kid_subset_size=kid_subset_size)
            models[name].update(fid=result["fid"], kid=result["kid"], kid_std=result["kid_std"])
        settings["fid"] = {"n": len(records), "n_reference": len(reference_features), "kid_subset_size":
                           min(kid_subset_size, len(records), len(reference_features)), **result["features"]}

    if len(posters) > 1:
        result = pickscore_win_rates(posters, prompts, load_clip(pickscore_model, device), batch_size=batch_size)
        for name in posters:
            models[name]["pickscore_win_rate"] = result["win_rate"][name]
            models[name]["pickscore_mean"] = result["mean_score"][name]
            details[name]["pickscore_pairwise"] = result["pairwise"][name]
        settings["pickscore"] = {"model": _name(pickscore_model)}

    captioned = [i for i, record in enumerate(records) if record.caption.strip()]
    if ocr_engine is not False and captioned:
        engine = ocr_engine or TesseractEngine()
        for name, images in posters.items():
            result = text_legibility([images[i] for i in captioned], [records[i].caption for i in captioned], engine)
            models[name].update(ocr_word_accuracy=result["word_accuracy"],
                                ocr_sentence_accuracy=result["sentence_accuracy"],
                                ocr_edit_distance=result["normalized_edit_distance"])
            details[name]["ocr_readings"] = result["readings"]
        settings["ocr"] = {"n": len(captioned), **result["engine"]}

    # Photo folders scraped from the web hold broken files; leave those out rather than fail the whole run.
    photos = [[photo for photo in record.actor_photos
               if not isinstance(photo, (str, os.PathLike)) or readable_images([Path(photo)])[0]]
              for record in records]
    with_actor = [i for i, record_photos in enumerate(photos) if record_photos]
    if likeness_model is not None and with_actor:
        encoder = load_clip(likeness_model, device)
        for name, images in posters.items():
            result = actor_likeness([images[i] for i in with_actor], [photos[i] for i in with_actor],
                                    encoder, batch_size=batch_size)
            models[name]["actor_likeness"] = result["actor_likeness"]
        settings["actor_likeness"] = {"n": len(with_actor), "model": _name(likeness_model)}

    return {"n": len(records), "models": models, "details": details, "settings": settings}


def fid_extractor_for(features: str, device: str | None = None, batch_size: int = 16):
    """`"inception"` -> `InceptionFeatures`; anything else is a CLIP id or folder -> `CLIPFeatures`."""
    if features == "inception":
        return InceptionFeatures(device=device, batch_size=batch_size)
    return CLIPFeatures(features, device=device, batch_size=batch_size)


def _name(model) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else "custom"
