"""`--cache-latents DIR`: each sample's VAE latent distribution and text embedding, computed once.

The VAE's encoder gives a Gaussian (mean, std) per image; training draws `mean + std * noise` at every step. The
cache keeps the mean and std (not one draw), so a cached run draws exactly what an uncached run with the same
seed would. Text embeddings are kept for the tasks whose text encoder is frozen (not `actor`).

Entries are one safetensors file per sample under a folder named after everything they depend on (base model, and
for a local folder the size and date of its encoders' files; resolution), so changing any of these starts a fresh
cache instead of reading stale tensors.
Writes go through a temporary file and `os.replace`: an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import safetensors.torch
import torch


class LatentCache:
    """A folder of `{key}.safetensors` entries with `latent_mean`, `latent_std` and optionally `text_embeddings`."""

    def __init__(self, directory: str, base_model: str, resolution: int, with_text: bool):
        settings = {"base_model": os.path.abspath(base_model) if os.path.isdir(base_model) else base_model,
                    "resolution": resolution, "with_text": with_text, "version": 1}
        if os.path.isdir(base_model):  # a folder may be rewritten in place: its encoders' files are part of the key
            settings["files"] = {
                os.path.join(folder, name): [os.path.getsize(path), os.path.getmtime(path)]
                for folder in ("vae", "text_encoder") if os.path.isdir(os.path.join(base_model, folder))
                for name in sorted(os.listdir(os.path.join(base_model, folder)))
                for path in [os.path.join(base_model, folder, name)]
            }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = os.path.join(directory, digest)
        self.with_text = with_text
        os.makedirs(self.directory, exist_ok=True)
        settings_file = os.path.join(self.directory, "settings.json")
        if not os.path.exists(settings_file):
            with open(settings_file + f".{os.getpid()}", "w") as handle:
                json.dump(settings, handle, indent=2)
            os.replace(settings_file + f".{os.getpid()}", settings_file)
        self._known = {name[: -len(".safetensors")] for name in os.listdir(self.directory)
                       if name.endswith(".safetensors")}

    def _path(self, key: str) -> str:
        safe = hashlib.sha1(key.encode()).hexdigest() if not key.replace("-", "").replace("_", "").isalnum() else key
        return os.path.join(self.directory, f"{safe}.safetensors")

    def has(self, key: str) -> bool:
        return os.path.basename(self._path(key))[: -len(".safetensors")] in self._known

    def get(self, key: str) -> dict[str, torch.Tensor]:
        return safetensors.torch.load_file(self._path(key))

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self._path(key)
        temporary = f"{path}.{os.getpid()}.tmp"
        safetensors.torch.save_file({name: tensor.detach().float().cpu().contiguous()
                                     for name, tensor in tensors.items()}, temporary)
        os.replace(temporary, path)
        self._known.add(os.path.basename(path)[: -len(".safetensors")])


def encode_batch(batch: dict, vae, text_encoder, cache: Optional[LatentCache], weight_dtype: torch.dtype,
                 encode_text: bool = True) -> dict[str, torch.Tensor]:
    """The batch's latent means and stds (and text embeddings when `encode_text`), from the cache where it has them.

    The examples listed in `batch["missing"]` are encoded (and stored when there is a cache); the others are read.
    """
    device = batch["input_ids"].device
    size = len(batch["ids"])
    encoded: dict[int, dict[str, torch.Tensor]] = {}
    if batch["missing"]:
        with torch.no_grad():
            pixels = batch["pixel_values"].to(device=device, dtype=weight_dtype)
            distribution = vae.encode(pixels).latent_dist
            text = None
            if encode_text:
                ids = batch["input_ids"][batch["missing"]]
                text = text_encoder(ids)[0]
        for row, position in enumerate(batch["missing"]):
            entry = {"latent_mean": distribution.mean[row].float(), "latent_std": distribution.std[row].float()}
            if text is not None:
                entry["text_embeddings"] = text[row].float()
            encoded[position] = entry
            if cache is not None:
                cache.put(batch["ids"][position], entry)
    for position in range(size):
        if position not in encoded:
            encoded[position] = {name: tensor.to(device) for name, tensor in cache.get(batch["ids"][position]).items()}
    names = ["latent_mean", "latent_std"] + (["text_embeddings"] if encode_text else [])
    return {name: torch.stack([encoded[position][name] for position in range(size)]) for name in names}
