"""`push_to_hub` and `from_pretrained(repo_id)` through the real `huggingface_hub` HTTP code, against the Hub
stand-in of `mpds.testing.hub` (the real Hub is unreachable here)."""

import json

from safetensors import safe_open

from mpds.testing.components import add_random_lora

PUSH_THEN_LOAD = """
import json, sys
import numpy as np, torch
from mpds.pipeline import MPDSPosterPipeline, PosterCaption

def poster(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe("a movie poster of {actor}, title", caption=PosterCaption("NIGHT SHIFT"), actor="bob",
                guidance_scale=5.0, actor_guidance_scale=3.0, caption_guidance_scale=2.0, height=32, width=32,
                num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)).images

local = MPDSPosterPipeline.from_pretrained(sys.argv[1])
url = local.push_to_hub("me/poster-model", datasets=["me/mpds"])
remote = MPDSPosterPipeline.from_pretrained("me/poster-model")
print(json.dumps({"url": str(url), "same_image": bool(np.array_equal(poster(local), poster(remote))),
                  "actors": remote.actors, "adapters": remote.get_active_adapters(),
                  "controlnet": remote.controlnet is not None}))
"""


def test_push_to_hub_then_from_pretrained_by_repo_id_gives_the_same_poster(pipe, tmp_path, local_hub):
    add_random_lora(pipe, adapter_name="poster_style")
    pipe.save_pretrained(tmp_path / "bundle")

    result = json.loads(local_hub.run(PUSH_THEN_LOAD, str(tmp_path / "bundle")).strip().splitlines()[-1])

    assert result == {"url": result["url"], "same_image": True, "actors": ["bob"], "adapters": ["poster_style"],
                      "controlnet": True}
    assert "/me/poster-model/commit/" in result["url"]
    repo = local_hub.repo_dir("me/poster-model")
    card = (repo / "README.md").read_text()
    assert "base_model: stable-diffusion-v1-5/stable-diffusion-v1-5" in card and "- me/mpds" in card
    assert 'MPDSPosterPipeline.from_pretrained("me/poster-model"' in card and "pip install mpds" in card
    with safe_open(str(repo / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as weights:
        assert not [key for key in weights.keys() if "lora" in key or "base_layer" in key]
    assert (repo / "lora" / "poster_style" / "pytorch_lora_weights.safetensors").is_file()
    assert (repo / "actors" / "bob" / "learned_embeds.safetensors").is_file()
    assert (repo / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
