"""Captioning posters into vision-perceptive prompts: the `text` column of `posters.csv`.

The paper captioned its posters with BLIP-2 and corrected some by hand. Any transformers image-to-text
model works here (`AutoModelForImageTextToText` and its processor); BLIP-2 `Salesforce/blip2-opt-2.7b`
is the default.

Who wrote a caption is kept in a `text-source` column of `posters.csv`:

- `human`: written or corrected by a person. Never replaced unless `overwrite_human=True`.
- `model:<model id>`: written by this module. Replaced with `overwrite=True`.
- empty: unknown (the published release has no marks, and mixes BLIP-2 and manual captions), so
  treated as `human`.

When you correct a caption by hand, set its `text-source` to `human`.

A run is resumable: each batch of captions is appended to `caption_progress.jsonl` as it is made and
folded into `posters.csv` every `save_every` captions and at the end, so a killed run loses nothing
and the next one skips the posters already captioned. Outputs that are empty or degenerate (repeated
words or phrases) are not written; they go to `caption_report.jsonl` with every other poster left
uncaptioned and its reason.

    from mpds.acquisition.caption import caption_posters
    summary = caption_posters("mpds_raw", batch_size=16)
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from PIL import Image
from tqdm.auto import tqdm

from ..data.parsing import CellError, clean_text, normalize_header, parse_id
from ..data.raw import RawFormatError, RawRelease, Reject
from ..devices import best_device

DEFAULT_MODEL = "Salesforce/blip2-opt-2.7b"
# BLIP-2 with OPT continues a text prefix; one that names the medium steers it to the poster's
# content and layout rather than to a generic photo caption.
DEFAULT_PROMPT = "a movie poster of"
HUMAN = "human"
MODEL_PREFIX = "model:"
SOURCE_COLUMN = "text-source"
PROGRESS_FILE = "caption_progress.jsonl"
REPORT_FILE = "caption_report.jsonl"
_TEXT_COLUMNS = ("text", "description", "caption")
_DTYPES = ("float32", "float16", "bfloat16")


class CaptionError(ValueError):
    """A caption run cannot start: a bad option, a model that is not image-to-text, or no release."""


def degenerate_reason(text: Optional[str]) -> Optional[str]:
    """Why a generated caption is unusable, or None when it is fine.

    `empty` (nothing but white space), `no_words` (no letters), `repeated_words` (a word three times
    in a row), `repeated_phrase` (a run of 2 to 4 words three times in a row), `repetitive` (at least
    8 words, fewer than 40% of them distinct).

    Example:
        >>> degenerate_reason("a man with a gun in front of a burning city")
        >>> degenerate_reason("the the the poster")
        'repeated_words'
    """
    text = (text or "").strip()
    if not text:
        return "empty"
    if not re.search(r"[^\W\d_]", text):
        return "no_words"
    words = re.findall(r"[\w']+", text.lower())
    for index in range(len(words) - 2):
        if words[index] == words[index + 1] == words[index + 2]:
            return "repeated_words"
    for size in (2, 3, 4):
        for start in range(len(words) - 3 * size + 1):
            phrase = words[start:start + size]
            if phrase == words[start + size:start + 2 * size] == words[start + 2 * size:start + 3 * size]:
                return "repeated_phrase"
    if len(words) >= 8 and len(set(words)) < 0.4 * len(words):
        return "repetitive"
    return None


def load_captioner(model_id: str, *, device: Optional[str] = None, dtype: str = "float32",
                   trust_remote_code: bool = False):
    """`(model, processor)` of an image-to-text model, in eval mode on `device` (default `best_device()`).

    Raises:
        CaptionError: if the model is not an image-to-text model transformers can load.
    """
    import torch
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if dtype not in _DTYPES:
        raise CaptionError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForImageTextToText.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    except ValueError as error:
        # Encoder-decoder captioners (ViT + GPT-2 and the like) are only in the older vision-to-text mapping.
        vision2seq = getattr(transformers, "AutoModelForVision2Seq", None)
        if vision2seq is None:
            raise CaptionError(f"{model_id} is not an image-to-text model transformers can load: {error}") from error
        try:
            model = vision2seq.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        except ValueError:
            raise CaptionError(f"{model_id} is not an image-to-text model transformers can load: {error}") from error
    model.to(device or best_device(), dtype=getattr(torch, dtype))
    return model.eval(), processor


class PostersTable:
    """`posters.csv` kept as read (every column, every row, in order), with captions set by id."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.header = ["id", "text", SOURCE_COLUMN]
        self.rows: list[list[str]] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                self.header = next(reader, None) or self.header
                self.rows = [row for row in reader if any(cell.strip() for cell in row)]
        names = [normalize_header(name) for name in self.header]
        if "id" not in names:
            raise RawFormatError(f"{self.path} has no id column (its columns: {self.header})")
        text = next((name for name in _TEXT_COLUMNS if name in names), None)
        if text is None:
            self.header.append("text")
            names.append("text")
            text = "text"
        if SOURCE_COLUMN not in names:
            self.header.append(SOURCE_COLUMN)
            names.append(SOURCE_COLUMN)
        self._id, self._text, self._source = names.index("id"), names.index(text), names.index(SOURCE_COLUMN)
        self._by_id: dict[int, int] = {}
        for index, row in enumerate(self.rows):
            row.extend([""] * (len(self.header) - len(row)))
            try:
                movie_id = parse_id(row[self._id])
            except CellError:
                continue
            self._by_id.setdefault(movie_id, index)  # the first row of an id is the one the builder reads

    def caption(self, movie_id: int) -> tuple[Optional[str], Optional[str]]:
        """`(text, text-source)` of a poster; None for what is empty or absent."""
        index = self._by_id.get(movie_id)
        if index is None:
            return None, None
        row = self.rows[index]
        return clean_text(row[self._text]), row[self._source].strip() or None

    def set_caption(self, movie_id: int, text: str, source: str) -> None:
        index = self._by_id.get(movie_id)
        if index is None:
            row = [""] * len(self.header)
            row[self._id] = str(movie_id)
            self.rows.append(row)
            index = self._by_id[movie_id] = len(self.rows) - 1
        self.rows[index][self._text] = text
        self.rows[index][self._source] = source

    def save(self) -> None:
        """Write the file under a temporary name, then rename: a kill leaves the old or the new file."""
        temporary = self.path.with_name(self.path.name + ".part")
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.header)
            writer.writerows(self.rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


@dataclass
class CaptionSummary:
    """What a run did: `written` captions, `counts` of each reason a poster was left, the report."""

    written: int = 0
    counts: Counter = field(default_factory=Counter)
    report_file: Optional[Path] = None

    def format(self) -> str:
        lines = [f"{self.written} captions written to posters.csv"]
        lines += [f"  {reason:22s} {count}" for reason, count in sorted(self.counts.items())]
        lines.append(f"posters left without a new caption, and why: {self.report_file}")
        return "\n".join(lines)


def _fold_progress(table: PostersTable, progress_path: Path) -> int:
    """Apply the captions of an interrupted run to the table; how many there were."""
    if not progress_path.is_file():
        return 0
    count = 0
    with open(progress_path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                table.set_caption(int(entry["id"]), entry["text"], entry["source"])
                count += 1
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
    return count


def _to_caption(decoded: str, prompt: str, keep_prompt: bool) -> tuple[str, str]:
    """`(caption to write, the model's own words)` from a decoded output."""
    words = decoded.strip()
    if prompt and words.lower().startswith(prompt.lower()):
        words = words[len(prompt):].strip()
    text = f"{prompt} {words}".strip() if keep_prompt and prompt else words
    return re.sub(r"\s+", " ", text), words


def _load_image(path: Path):
    try:
        with Image.open(path) as image:
            return image.convert("RGB"), None
    except Exception as error:  # Pillow raises several types for unreadable files
        return None, f"{type(error).__name__}: {error}"


def _prefetched(todo: list[tuple[int, int, Path]], batch_size: int):
    """`(batch, [(image, problem), ...])`, the next batch read from disk while the model works on this one."""
    batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        def submit(batch):
            return [pool.submit(_load_image, path) for _, _, path in batch]

        upcoming = submit(batches[0]) if batches else []
        for index, batch in enumerate(batches):
            current = upcoming
            upcoming = submit(batches[index + 1]) if index + 1 < len(batches) else []
            yield batch, [future.result() for future in current]


def caption_posters(
    root: Union[str, Path],
    model: Union[str, Any] = DEFAULT_MODEL,
    *,
    processor: Any = None,
    prompt: str = DEFAULT_PROMPT,
    keep_prompt: bool = True,
    batch_size: int = 8,
    device: Optional[str] = None,
    dtype: str = "float32",
    overwrite: bool = False,
    overwrite_human: bool = False,
    max_new_tokens: int = 40,
    num_beams: int = 1,
    generate_kwargs: Optional[dict] = None,
    save_every: int = 10_000,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> CaptionSummary:
    """Caption the posters of a raw release into the `text` column of its `posters.csv`.

    Args:
        root: the raw release (`meta.csv`, `posters/`); `posters.csv` is created if absent.
        model: a model id or folder, or a loaded model (then pass its `processor` too).
        prompt: the text the model continues; `""` for unconditional captioning.
        keep_prompt: write the prompt in front of the model's words (right for a prefix prompt such as
            the default; turn off for a question prompt).
        batch_size: posters per `generate` call.
        device, dtype: where and in what precision the model runs (default: `best_device()`, float32).
        overwrite: replace captions written by a model (`text-source` `model:...`).
        overwrite_human: replace human and unmarked captions too.
        max_new_tokens, num_beams, generate_kwargs: passed to `generate`.
        save_every: fold the progress file into `posters.csv` after this many captions.
        trust_remote_code: let transformers run code from the model repository (off by default).

    Returns:
        a `CaptionSummary`.

    Raises:
        CaptionError: for a bad option or a model that is not image-to-text.
        RawFormatError: if `root` is not a raw release.

    Example:
        >>> caption_posters("mpds_raw", batch_size=16, dtype="float16")  # doctest: +SKIP
    """
    import torch

    # 1. Check inputs.
    if batch_size < 1 or save_every < 1 or max_new_tokens < 1 or num_beams < 1:
        raise CaptionError(f"batch_size, save_every, max_new_tokens and num_beams must be at least 1, got "
                           f"{batch_size}, {save_every}, {max_new_tokens}, {num_beams}")
    if not isinstance(model, str) and processor is None:
        raise CaptionError("a loaded model needs its processor: pass processor=...")
    release = RawRelease(root)
    progress_path = release.root / PROGRESS_FILE
    report_path = release.root / REPORT_FILE
    summary = CaptionSummary(report_file=report_path)

    # 2. Read posters.csv and finish an interrupted run.
    table = PostersTable(release.posters_csv)
    if _fold_progress(table, progress_path):
        table.save()
    progress_path.unlink(missing_ok=True)

    # 3. Choose the posters to caption; every other movie is either captioned already or reported.
    report: list[dict] = []
    todo: list[tuple[int, int, Path]] = []
    for number, movie in release.movies(release.scan(), "caption"):
        if isinstance(movie, Reject):
            report.append({"id": movie.id, "row": number, "reason": movie.reason, "detail": movie.detail})
            continue
        text, source = table.caption(movie.id)
        if text and not overwrite_human and not (source or "").startswith(MODEL_PREFIX):
            summary.counts["kept_human" if source == HUMAN else "kept_unmarked"] += 1
            continue
        if text and not overwrite and not overwrite_human:
            summary.counts["already_captioned"] += 1
            continue
        path = release.poster_path(movie.id)
        if path is None:
            report.append({"id": movie.id, "row": number, "reason": "missing_image",
                           "detail": f"no {release.posters_dir}/{movie.id}.jpg (nor .jpeg, .png, .webp)"})
            continue
        todo.append((movie.id, number, path))

    # 4. Load the model.
    if todo:
        if isinstance(model, str):
            model_name = model
            model, processor = load_captioner(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        else:
            model_name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        source = MODEL_PREFIX + model_name
        model_device = next(model.parameters()).device
        model_dtype = next(model.parameters()).dtype
        generation = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, **(generate_kwargs or {})}

    # 5. Caption batch by batch; each batch goes to the progress file before the next starts.
    bar = tqdm(total=len(todo), unit="poster", desc="caption", disable=not progress or None, dynamic_ncols=True)
    pending = 0
    with open(progress_path, "a", encoding="utf-8") as journal:
        for batch, loaded in _prefetched(todo, batch_size):
            ids, images = [], []
            for (movie_id, number, path), (image, problem) in zip(batch, loaded):
                if image is None:
                    report.append({"id": movie_id, "row": number, "reason": "image_undecodable", "detail": problem,
                                   "file": str(path.relative_to(release.root))})
                else:
                    ids.append((movie_id, number))
                    images.append(image)
            bar.update(len(batch) - len(ids))
            if not ids:
                continue
            if prompt:
                inputs = processor(images=images, text=[prompt] * len(images), return_tensors="pt")
            else:
                inputs = processor(images=images, return_tensors="pt")
            inputs = {name: value.to(model_device, dtype=model_dtype) if value.is_floating_point()
                      else value.to(model_device) for name, value in inputs.items()}
            with torch.inference_mode():
                outputs = model.generate(**inputs, **generation)
            prompt_ids = inputs.get("input_ids")
            if prompt_ids is not None and outputs.shape[1] >= prompt_ids.shape[1] \
                    and torch.equal(outputs[:, : prompt_ids.shape[1]], prompt_ids):
                outputs = outputs[:, prompt_ids.shape[1]:]  # decoder-only models return the prompt first
            decoded = processor.batch_decode(outputs, skip_special_tokens=True)
            for (movie_id, number), output in zip(ids, decoded):
                text, own_words = _to_caption(output, prompt, keep_prompt)
                reason = degenerate_reason(own_words)
                if reason:
                    report.append({"id": movie_id, "row": number, "reason": reason,
                                   "detail": "the model's output was not written", "output": output})
                    continue
                table.set_caption(movie_id, text, source)
                journal.write(json.dumps({"id": movie_id, "text": text, "source": source}, ensure_ascii=False) + "\n")
                summary.written += 1
                pending += 1
            journal.flush()
            bar.update(len(ids))
            if pending >= save_every:
                table.save()
                journal.truncate(0)
                pending = 0
    bar.close()

    # 6. Write posters.csv and the report.
    table.save()
    progress_path.unlink(missing_ok=True)
    summary.counts.update(entry["reason"] for entry in report)
    temporary = report_path.with_name(report_path.name + ".part")
    with open(temporary, "w", encoding="utf-8") as handle:
        for entry in report:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    os.replace(temporary, report_path)
    return summary
