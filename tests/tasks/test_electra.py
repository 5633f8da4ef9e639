"""ELECTRA pre-training: the generator shares the discriminator's tables, its samples replace the masked
tokens, the discriminator learns to find them, and the run exports the discriminator alone."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from encoderlab.adapt.param_groups import param_groups
from encoderlab.data.base import Targets
from encoderlab.data.collators import MLMCollator
from encoderlab.data.tokenizer import save_tokenizer, special_token_ids, train_wordpiece
from encoderlab.errors import UserError
from encoderlab.formats.export import WEIGHTS_FILE, load_encoder, load_mlm_head
from encoderlab.models.encoder import PRESETS, EncoderConfig, build
from encoderlab.models.heads import ReplacedTokenHead
from encoderlab.run.layout import RunDir
from encoderlab.tasks.electra import ElectraTask, generator_config, replace_masked
from encoderlab.tasks.pairing import check_data_fits

# Each sentence draws its words from one topic: a masked word's topic is plain from the others, and so is a
# replacement from another topic (which an untrained generator mostly samples).
TOPICS = [
    ["apple", "pear", "plum", "grape", "melon", "lemon"],
    ["red", "blue", "green", "yellow", "purple", "orange"],
    ["cat", "dog", "horse", "cow", "sheep", "goat"],
    ["car", "bus", "train", "truck", "boat", "plane"],
    ["piano", "violin", "drum", "flute", "guitar", "harp"],
    ["paris", "london", "rome", "berlin", "madrid", "vienna"],
]


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(rng.choice(TOPICS), k=rng.randint(8, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(sentences(300, seed=1), vocab_size=200)


def batches(tokenizer, n_batches: int, seed: int, batch_size: int = 32) -> list[dict]:
    """MLM batches as objective=electra masks them: 15 % of the tokens, all [MASK]."""
    ids = special_token_ids(tokenizer)
    collate = MLMCollator(
        pad_id=ids["pad"],
        mask_id=ids["mask"],
        vocab_size=tokenizer.get_vocab_size(),
        special_ids=list(ids.values()),
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
        seed=seed,
    )
    texts = sentences(n_batches * batch_size, seed)
    items = [(i, torch.tensor(tokenizer.encode(t).ids)) for i, t in enumerate(texts)]
    return [collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def make_task(vocab_size: int, seed: int = 0, **settings) -> ElectraTask:
    torch.manual_seed(seed)
    encoder = build(
        vocab_size, layers=2, hidden=64, heads=2, intermediate=128, max_positions=32, dropout=0.0,
        attention_dropout=0.0, norm_first=True,
    )  # fmt: skip
    return ElectraTask(encoder, ReplacedTokenHead(encoder), **settings)


def test_the_discriminator_beats_the_always_original_baseline(tokenizer):
    task = make_task(tokenizer.get_vocab_size())
    optimizer = torch.optim.AdamW(param_groups(task, 0.01), lr=1e-3)
    task.train()
    for step, batch in enumerate(batches(tokenizer, 200, seed=2)):
        loss = task.losses(batch, "train", step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    task.eval()
    with torch.no_grad():
        outs = [task.losses(b, "val", i) for i, b in enumerate(batches(tokenizer, 4, seed=3))]
    replaced = torch.cat([o["replaced"] for o in outs])
    predicted = torch.cat([o["rtd_logits"] for o in outs]) > 0
    accuracy, replaced_rate = (predicted == replaced).float().mean().item(), replaced.float().mean().item()
    assert replaced_rate > 0.03  # the generator still replaces tokens, so there is something to find
    # Better than always answering "original" (error = replaced_rate) by a fifth of the replaced tokens.
    assert 1 - accuracy < 0.8 * replaced_rate, (accuracy, replaced_rate)


def test_the_generator_is_a_quarter_wide_and_shares_the_embedding_tables(tokenizer):
    task = make_task(tokenizer.get_vocab_size())
    generator, discriminator = task.generator.encoder, task.encoder
    assert (generator.config.hidden, generator.config.intermediate, generator.config.heads) == (16, 32, 1)
    assert generator.config.layers == discriminator.config.layers
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        shared = getattr(discriminator.embeddings, name).weight
        assert getattr(generator.embeddings, name).weight is shared
    assert task.generator.head.decoder.weight is discriminator.embeddings.word_embeddings.weight
    assert generator.embeddings.projection is not None  # 64-wide tables → 16-wide generator
    # Every parameter reaches the optimizer once: the generator's own ones and the shared tables.
    grouped = [id(p) for group in param_groups(task, 0.01) for p in group["params"]]
    assert len(grouped) == len(set(grouped)) == len({id(p) for p in task.parameters()})
    assert {id(p) for p in task.generator.parameters()} <= set(grouped)


def test_generator_shapes_follow_the_preset():
    base = EncoderConfig(vocab_size=100, **PRESETS["base"])
    wide = generator_config(base, 0.25)
    assert (wide.hidden, wide.heads, wide.intermediate, wide.layers) == (192, 3, 768, 12)
    assert wide.embedding_size == 768  # the discriminator's tables, projected to 192
    tiny = generator_config(EncoderConfig(vocab_size=100, **PRESETS["tiny"]), 0.25, layers=1)
    assert (tiny.hidden, tiny.heads, tiny.layers) == (32, 1, 1)


def test_loss_is_mlm_plus_weighted_rtd_and_the_draws_are_seeded(tokenizer):
    task = make_task(tokenizer.get_vocab_size()).eval()
    batch = batches(tokenizer, 1, seed=4)[0]
    with torch.no_grad():
        out = task.losses(batch, "val", 0)
        # Recomputed on the plain path: every position's hidden state, then the masked ones.
        selected = batch["labels"] != -100
        hidden = task.generator.encoder(batch["input_ids"], batch["attention_mask"])[selected]
        logits = task.generator.head(hidden)
        mlm = F.cross_entropy(logits, batch["labels"][selected])
        draws = task._sampling_generator("val", 0, logits.device)
        sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=draws).squeeze(1)
        corrupted, replaced = replace_masked(batch, sampled)
        real = batch["attention_mask"].bool()
        rtd_logits = task.head(task.encoder(corrupted, batch["attention_mask"]))[real]
        rtd = F.binary_cross_entropy_with_logits(rtd_logits, replaced[real].float())
        again = task.losses(batch, "val", 0)
    assert task.rtd_weight == 50.0
    assert torch.allclose(out["mlm_loss"], mlm, atol=1e-5) and torch.allclose(out["rtd_loss"], rtd, atol=1e-5)
    assert torch.allclose(out["loss"], mlm + 50.0 * rtd, atol=1e-4)
    assert torch.equal(out["replaced"], again["replaced"])  # same key, same replacements
    # A sample equal to the original is not "replaced"; nothing outside the masked positions is.
    assert not replaced[~selected].any()
    assert torch.equal(replaced[selected], sampled != batch["labels"][selected])


def test_the_state_dict_round_trips_the_generator(tokenizer):
    trained, fresh = (
        make_task(tokenizer.get_vocab_size(), seed=0),
        make_task(tokenizer.get_vocab_size(), seed=1),
    )
    state = trained.state_dict()
    assert any(k.startswith("generator.encoder.layers.") for k in state)
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Still tied after loading: the tables are one Parameter.
    shared = fresh.encoder.embeddings.word_embeddings.weight
    assert fresh.generator.encoder.embeddings.word_embeddings.weight is shared


class Corpus:
    targets = Targets.TOKENS

    def __init__(self, masking: str, tokenizer_dir=None) -> None:
        self.masking = masking
        self.tokenizer_dir = tokenizer_dir


def test_the_export_is_the_discriminator_alone_and_the_generator_is_kept(tokenizer, tmp_path):
    task = make_task(tokenizer.get_vocab_size()).eval()
    save_tokenizer(tokenizer, tmp_path / "tok")
    run = RunDir(tmp_path / "run")
    task.save_artifacts(run, Corpus("token", tmp_path / "tok"))
    exported = load_file(str(run.encoder / WEIGHTS_FILE))
    own = task.encoder.state_dict()
    assert set(exported) == set(own)
    assert all(exported[k].shape == own[k].shape for k in own)  # no 16-wide generator tensor in it
    kept = RunDir(run.generator)
    generator = load_encoder(kept.encoder).eval()
    head = load_mlm_head(generator, export_dir=kept.encoder)
    ids = torch.tensor([tokenizer.encode("red blue green").ids])
    with torch.no_grad():
        expected = task.generator.head(task.generator.encoder(ids))
        assert torch.allclose(head(generator(ids)), expected, atol=1e-5)
    with pytest.raises(UserError, match="a pre-training run predicts masked tokens"):
        task.prediction_rows([], torch.zeros(0))


def test_settings_and_unmasked_data_are_refused(tokenizer):
    with pytest.raises(UserError, match="task.generator_fraction=0 must"):
        make_task(tokenizer.get_vocab_size(), generator_fraction=0)
    with pytest.raises(UserError, match="data.masking=none masks nothing — set data.masking=token"):
        check_data_fits(ElectraTask, Corpus("none"))
    check_data_fits(ElectraTask, Corpus("token"))
