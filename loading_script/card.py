"""Writing the dataset card (`README.md`) of a hub-layout MPDS build."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from datasets import DatasetInfo, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from mpds import __version__
from mpds.data.features import FEATURES, webdataset_features

TEMPLATE = "dataset_card_template.md"
DEFAULT_REPO_ID = "mpds/movie-posters"


def config_features(config: str, file_format: str):
    if file_format == "webdataset":
        return webdataset_features(config)
    return FEATURES[config]


def card_data(splits: dict[str, dict[str, dict]], file_format: str) -> DatasetCardData:
    """The card's YAML: every config with explicit `data_files` per split, its features and split sizes.

    Args:
        splits: `{config: {split: {"files": [...], "num_examples": int, "num_bytes": int}}}`.
        file_format: "parquet" or "webdataset".
    """
    data = DatasetCardData(
        license="cc-by-nc-sa-4.0",
        language=["en"],
        pretty_name="MPDS: Movie Posters DataSet",
        task_categories=["text-to-image"],
        tags=["movie-posters", "posters", "text-to-image", "diffusion", "mpds"],
    )
    configs = {}
    infos = {}
    for config, config_splits in splits.items():
        configs[config] = {
            "data_files": [{"split": name, "path": entry["files"]} for name, entry in config_splits.items() if entry["files"]],
        }
        if config == "posters":
            configs[config]["default"] = True
        split_dict = SplitDict(dataset_name="mpds")
        for name, entry in config_splits.items():
            if entry["files"]:
                split_dict.add(SplitInfo(name=name, num_bytes=entry["num_bytes"], num_examples=entry["num_examples"]))
        size = sum(entry["num_bytes"] for entry in config_splits.values())
        infos[config] = DatasetInfo(features=config_features(config, file_format), splits=split_dict,
                                    download_size=size, dataset_size=size)
    MetadataConfigs(configs).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def render_card(splits: dict, file_format: str, summary, repo_id: str = DEFAULT_REPO_ID) -> DatasetCard:
    """The whole card: the YAML of `card_data` and the body of the template."""
    template = resources.files("mpds.loading_script").joinpath(TEMPLATE).read_text(encoding="utf-8")
    rows = [{"config": config, "split": name, "rows": entry["num_examples"]}
            for config, config_splits in splits.items() for name, entry in config_splits.items() if entry["files"]]
    fields = {config: ", ".join(f"`{name}`" for name in config_features(config, file_format)) for config in splits}
    return DatasetCard.from_template(
        card_data(splits, file_format),
        template_str=template,
        mpds_version=__version__,
        file_format=file_format,
        repo_id=repo_id,
        split_rows=rows,
        fields=fields,
        rejected_summary="\n".join(f"- {line.strip()}" for line in str(summary).splitlines()[1:-1]),
    )


def write_card(out_dir, splits: dict, file_format: str, summary, repo_id: str = DEFAULT_REPO_ID) -> Path:
    path = Path(out_dir) / "README.md"
    render_card(splits, file_format, summary, repo_id).save(path)
    return path
