"""The evaluation report: report.json, a Markdown table in the layout of the paper's Table 1, charts, a contact sheet."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from .models import open_image

# (key in results, column header, format, higher is better). The first three are the paper's Table 1.
COLUMNS = (
    ("clipscore", "CLIP-score↑", "{:.4f}", True),
    ("fid", "FID↓", "{:.2f}", False),
    ("pickscore_win_rate", "PickScore↑", "{:.1%}", True),
    ("clip_cosine", "CLIP cosine↑", "{:.4f}", True),
    ("kid", "KID↓", "{:.4f}", False),
    ("ocr_word_accuracy", "OCR word acc.↑", "{:.1%}", True),
    ("ocr_sentence_accuracy", "OCR sentence acc.↑", "{:.1%}", True),
    ("ocr_edit_distance", "OCR edit dist.↓", "{:.3f}", False),
    ("actor_likeness", "Actor likeness↑", "{:.4f}", True),
)
CONTACT_SHEET_ROWS = 8
THUMBNAIL = 160


def format_value(metric: str, value) -> str:
    """A metric's value as the Markdown table shows it ("-" when missing)."""
    if value is None:
        return "-"
    fmt = next(fmt for key, _, fmt, _ in COLUMNS if key == metric)
    return fmt.format(value)


def markdown_table(results: Mapping) -> str:
    """The paper's Table 1 (Method, CLIP-score, FID, PickScore) plus the new columns that have values."""
    models = results["models"]
    columns = [column for column in COLUMNS if any(column[0] in row for row in models.values())]
    lines = [
        "| Method | " + " | ".join(header for _, header, _, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in models.items():
        lines.append(f"| {name} | " + " | ".join(format_value(key, row.get(key)) for key, *_ in columns) + " |")
    return "\n".join(lines)


def _settings_text(results: Mapping) -> str:
    settings = results.get("settings", {})
    lines = [f"- N = {results['n']} prompts, device {settings.get('device', '?')}."]
    if "clip_score" in settings:
        s = settings["clip_score"]
        lines.append(f"- CLIP-score is CLIPScore = {s['weight']} x max(cosine, 0) with `{s['model']}`; "
                     "CLIP cosine is the raw cosine.")
    if "fid" in settings:
        s = settings["fid"]
        lines.append(f"- FID/KID: {s['n']} generated vs {s['n_reference']} reference posters; features "
                     f"{s.get('extractor')} ({s.get('feature_dim')}-d), resize: {s.get('resize')}; KID subsets of "
                     f"{s['kid_subset_size']}. FID is biased upwards at small N: compare at equal N, prefer KID.")
    if "pickscore" in settings:
        lines.append(f"- PickScore: win rate against the other models on the same prompts (ties count half), "
                     f"scorer `{settings['pickscore']['model']}`; the column does not sum to 100%.")
    if "ocr" in settings:
        s = settings["ocr"]
        lines.append(f"- OCR ({s.get('engine')}) on the {s['n']} posters with a caption: word accuracy, sentence "
                     "accuracy (all caption words read), normalised character edit distance.")
    if "actor_likeness" in settings:
        s = settings["actor_likeness"]
        lines.append(f"- Actor likeness: cosine to the mean embedding of the actor's photos with `{s['model']}`, "
                     f"{s['n']} posters.")
    return "\n".join(lines)


def bar_chart(results: Mapping, metric: str, path: str | os.PathLike) -> Path:
    """One bar per model for `metric`; the title says whether higher or lower is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, header, _, higher = next(column for column in COLUMNS if column[0] == metric)
    names = [name for name, row in results["models"].items() if row.get(metric) is not None]
    values = [results["models"][name][metric] for name in names]
    figure, axis = plt.subplots(figsize=(max(3.0, 1.2 * len(names) + 1.5), 3.2))
    bars = axis.bar(names, values, color="#4c72b0")
    axis.bar_label(bars, labels=[format_value(metric, value) for value in values], fontsize=8)
    axis.set_title(f"{header} ({'higher' if higher else 'lower'} is better)")
    axis.margins(y=0.15)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def contact_sheet(
    posters: Mapping[str, Sequence],
    prompts: Sequence[str],
    captions: Sequence[str],
    path: str | os.PathLike,
    rows: int = CONTACT_SHEET_ROWS,
) -> Path:
    """A grid: for each of the first `rows` prompts, its prompt and caption, then each model's poster."""
    font = ImageFont.load_default(size=12)
    names = list(posters)
    text_width, gap, header = 300, 8, 24
    rows = min(rows, len(prompts))
    width = text_width + len(names) * (THUMBNAIL + gap) + gap
    height = header + rows * (THUMBNAIL + gap) + gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(names):
        draw.text((text_width + column * (THUMBNAIL + gap) + gap, 6), name, fill="black", font=font)
    for row in range(rows):
        top = header + row * (THUMBNAIL + gap)
        caption = " / ".join(line for line in captions[row].splitlines() if line.strip())
        text = textwrap.fill(prompts[row], 44)[:400] + ("\n\ncaption: " + textwrap.fill(caption, 44) if caption else "")
        draw.multiline_text((gap, top), text, fill="black", font=font, spacing=2)
        for column, name in enumerate(names):
            poster = open_image(posters[name][row])
            scale = THUMBNAIL / max(poster.size)  # small test posters are enlarged too, pixel for pixel
            poster = poster.resize((round(poster.width * scale), round(poster.height * scale)),
                                   Image.NEAREST if scale > 1 else Image.LANCZOS)
            sheet.paste(poster, (text_width + column * (THUMBNAIL + gap) + gap, top))
    sheet.save(path)
    return Path(path)


def write_report(
    results: Mapping,
    out: str | os.PathLike,
    posters: Mapping[str, Sequence] | None = None,
    prompts: Sequence[str] = (),
    captions: Sequence[str] = (),
) -> dict:
    """Write `report.json`, `report.md`, `chart_<metric>.png` for each metric and `contact_sheet.png` to `out`.

    Returns:
        The file names written, by kind (also stored in report.json under "files").
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": "report.json", "markdown": "report.md", "charts": {}}
    for metric, *_ in COLUMNS:
        if any(row.get(metric) is not None for row in results["models"].values()):
            files["charts"][metric] = bar_chart(results, metric, out / f"chart_{metric}.png").name
    if posters:
        files["contact_sheet"] = contact_sheet(posters, prompts, captions, out / "contact_sheet.png").name
    markdown = ("# Evaluation\n\nIn the layout of the MPDS paper's Table 1, with the new columns after PickScore.\n\n"
                f"{markdown_table(results)}\n\n{_settings_text(results)}\n")
    (out / "report.md").write_text(markdown, encoding="utf-8")
    report = {**results, "files": files}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return files
