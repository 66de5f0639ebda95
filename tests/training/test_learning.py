"""What each task learns: the loss falls on a repeated batch, and only the task's parameters move."""

import itertools

import pytest
import torch

from mpds.training import parse_args
from mpds.training.cache import encode_batch
from mpds.training.data import Collator, actor_epochs, actor_examples, poster_epochs, poster_stream
from mpds.training.models import load_models, trainable_parameters

LEARNING_RATES = {"lora": "1e-2", "actor": "5e-2", "controlnet": "1e-3"}


def _setup(task, train, tiny_args):
    """The script's own models, batch, optimizer and loss for one batch of the task."""
    args = parse_args(tiny_args(task, "--learning_rate", LEARNING_RATES[task], "--actors", "Ava Stone,Omar Hart"))
    if task == "actor":
        names, photos = actor_examples(args)
        examples = list(itertools.islice(actor_epochs(photos, names, args.seed)(0, 0), 2))
    else:
        names = None
        read_epoch = poster_epochs(poster_stream(args), args.seed, args.shuffle_buffer_size, args.max_train_samples)
        examples = list(itertools.islice(read_epoch(0, 0), 2))
    models = load_models(args, names)
    batch = Collator(task, models.tokenizer, args.resolution)(examples)
    optimizer = torch.optim.AdamW(trainable_parameters(models), lr=args.learning_rate,
                                  weight_decay=0.0 if task == "actor" else args.adam_weight_decay)

    def step():
        """One optimizer step on the batch, with the same noise and timesteps every time; returns the loss."""
        generator = torch.Generator().manual_seed(0)
        encoded = encode_batch(batch, models.vae, models.text_encoder, None, torch.float32, encode_text=task != "actor")
        loss = train.compute_loss(task, models, models.trainable, batch, encoded, generator, torch.float32)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return models, step


def _all_tensors(models):
    modules = {"vae": models.vae, "text_encoder": models.text_encoder, "unet": models.unet,
               "controlnet": models.controlnet}
    return {f"{name}.{key}": value.detach().clone() for name, module in modules.items() if module is not None
            for key, value in module.state_dict().items()}


@pytest.mark.parametrize("task", ["lora", "actor", "controlnet"])
def test_the_loss_decreases_on_a_repeated_batch(task, train, tiny_args):
    _, step = _setup(task, train, tiny_args)
    losses = [step() for _ in range(8)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.998 * losses[0], losses


@pytest.mark.parametrize("task", ["lora", "actor", "controlnet"])
def test_only_the_trainable_parameters_change(task, train, tiny_args):
    models, step = _setup(task, train, tiny_args)
    before = _all_tensors(models)
    for _ in range(2):
        step()
    after = _all_tensors(models)
    changed = {key for key in before if not torch.equal(before[key], after[key])}

    if task == "lora":
        expected = {key for key in before if ".lora_A.mpds_poster." in key or ".lora_B.mpds_poster." in key}
    elif task == "actor":
        expected = {"text_encoder.embeddings.token_embedding.new_rows"}
    else:
        expected = {key for key in before if key.startswith("controlnet.")}
    assert changed, "nothing was trained"
    assert changed <= expected, sorted(changed - expected)[:5]
    if task == "lora":  # the LoRA's up projections start at zero and must have moved
        assert any(".lora_B." in key for key in changed)
    if task == "actor":  # both actors' rows moved, the vocabulary's rows did not
        rows_before = before["text_encoder.embeddings.token_embedding.new_rows"]
        rows_after = after["text_encoder.embeddings.token_embedding.new_rows"]
        assert all(not torch.equal(rows_before[k], rows_after[k]) for k in range(2))
