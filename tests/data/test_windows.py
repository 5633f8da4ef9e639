"""Long documents in overlapping windows: splitting, framing, collation, the report, window pooling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.token_cache import TokenIds
from encoderlab.data.tokenizer import save_tokenizer, special_token_ids, train_wordpiece
from encoderlab.data.windows import (
    Frame,
    Truncation,
    WindowCollator,
    WindowedDataset,
    Windows,
    recorded_windows,
    window_spans,
    windows_needed,
)
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier, pool_windows


@pytest.fixture(scope="module")
def tokenizer(make_sentences):
    return train_wordpiece(make_sentences(200, seed=1), vocab_size=80)


def token_ids(lengths: list[int], seed: int = 0) -> TokenIds:
    """Documents of random token ids with the given lengths, as the token-id cache holds them."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(10, 60, n) for n in lengths]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenIds(np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, np.int64), offsets)


@pytest.mark.parametrize("width,stride", [(14, 7), (14, 14), (14, 1), (5, 3), (1, 1)])
def test_windows_cover_every_token_with_the_configured_overlap(width, stride):
    for n in range(0, 60):
        spans = window_spans(n, width, stride, max_windows=None)
        assert len(spans) == windows_needed(n, width, stride)
        assert spans[0][0] == 0 and spans[-1][1] == n  # from the first token to the last
        covered = sorted({i for start, end in spans for i in range(start, end)})
        assert covered == list(range(n))
        assert all(0 < end - start <= width for start, end in spans) or n == 0
        for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False):
            assert s2 - s1 == stride
            assert e1 - s2 == width - stride  # the overlap, also before the (shorter) last window
        if len(spans) > 1:  # no window more than needed: the one before the last stops short of the end
            assert spans[-2][1] < n


def test_max_windows_caps_a_document_and_the_report_counts_it(tokenizer):
    windows = Windows(tokenizer, max_seq_len=12, stride=5, max_windows=3)  # width 10
    assert windows.width == 10 and windows.overlap == 5
    lengths = [3, 10, 11, 20, 60]  # 1, 1, 2, 3 windows; the last needs 11 and gets 3
    ds = WindowedDataset(token_ids(lengths), np.zeros(len(lengths), dtype=np.int64), windows)
    assert [len(ds[i]["windows"]) for i in range(len(lengths))] == [1, 1, 2, 3, 3]
    # The capped document keeps its first tokens: 3 windows reach token 5 * 2 + 10 = 20.
    kept = np.concatenate([w["input_ids"][1:-1].numpy() for w in ds[4]["windows"]])
    assert set(kept.tolist()) <= set(ds.token_ids[4][:20].tolist())
    report = windows.report(ds)
    assert report == {
        "documents": 5,
        "longer_than_window": 3,
        "mean_windows": 2.0,
        "most_windows": 3,
        "cut": 1,
        "cut_share": 0.2,
    }
    assert "1 cut by data.max_windows=3" in windows.summary(report)
    # What the sampler groups by: every framed token the encoder will read.
    expected = [sum(len(w["input_ids"]) for w in ds[i]["windows"]) for i in range(len(lengths))]
    assert ds.lengths.tolist() == expected


def test_each_window_is_framed_as_the_tokenizer_frames_a_text(tokenizer):
    ids = special_token_ids(tokenizer)
    frame = Frame.of(tokenizer)
    assert (frame.prefix, frame.suffix, len(frame)) == ((ids["cls"],), (ids["sep"],), 2)
    windows = Windows(tokenizer, max_seq_len=8, stride=4)
    doc = np.arange(10, 31)  # 21 text tokens: windows of 6, one every 4
    parts = windows.split(doc)
    assert len(parts) == 5
    for part in parts:
        assert part["input_ids"][0] == ids["cls"] and part["input_ids"][-1] == ids["sep"]
        assert len(part["input_ids"]) <= 8
        assert part["token_type_ids"].tolist() == [0] * len(part["input_ids"])
    texts = [part["input_ids"][1:-1].tolist() for part in parts]
    assert texts[0] == list(range(10, 16)) and texts[1][:2] == list(range(14, 16))  # 2 tokens shared
    assert texts[-1][-1] == 30


def test_a_short_document_is_one_window_identical_to_todays_encoding(tokenizer):
    texts = ["the film was good", "a plot", "", "the movie " * 3]
    windows = Windows(tokenizer, max_seq_len=16)
    batch = windows.inputs(tokenizer, texts)
    today = TextClassificationDataModule.prediction_batch(tokenizer, 16, texts)
    assert batch["document_index"].tolist() == [0, 1, 2, 3]  # one window each
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], today[key]), key


def test_collation_pads_windows_and_names_their_documents(tokenizer):
    windows = Windows(tokenizer, max_seq_len=8, stride=3)
    ds = WindowedDataset(token_ids([2, 13, 7]), np.array([1, 0, 1]), windows)
    batch = WindowCollator(special_token_ids(tokenizer)["pad"])([ds[0], ds[1], ds[2]])
    counts = [len(ds[i]["windows"]) for i in range(3)]
    assert counts == [1, 4, 2]
    assert batch["document_index"].tolist() == [0, 1, 1, 1, 1, 2, 2]
    assert batch["labels"].tolist() == [1, 0, 1]
    assert batch["input_ids"].shape == (7, 8)
    real = batch["attention_mask"].sum(1).tolist()
    assert real == [len(w["input_ids"]) for i in range(3) for w in ds[i]["windows"]]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == special_token_ids(tokenizer)["pad"]).all()


def test_pooling_windows_per_document():
    torch.manual_seed(0)
    vectors = torch.randn(6, 4)
    index = torch.tensor([0, 0, 0, 1, 2, 2])
    mean = pool_windows(vectors, index, "mean")
    assert mean.shape == (3, 4)
    assert torch.allclose(mean[0], vectors[:3].mean(0)) and torch.allclose(mean[1], vectors[3])
    maxed = pool_windows(vectors, index, "max")
    assert torch.allclose(maxed[2], vectors[4:].amax(0))
    scores = torch.tensor([0.0, 1.0, 2.0, 5.0, -1.0, 1.0], requires_grad=True)
    attended = pool_windows(vectors, index, "attention", scores)
    weights = torch.softmax(scores[:3].detach(), 0)
    assert torch.allclose(attended[0], (weights[:, None] * vectors[:3]).sum(0), atol=1e-6)
    assert torch.allclose(attended[1], vectors[3])  # one window: all the weight
    attended.sum().backward()
    assert scores.grad is not None and scores.grad[:3].abs().sum() > 0
    # Equal scores weigh every window alike: the mean.
    assert torch.allclose(pool_windows(vectors, index, "attention", torch.zeros(6)), mean, atol=1e-6)


@pytest.mark.parametrize("window_pooling", ["mean", "max", "attention"])
def test_the_classifier_predicts_once_per_document(window_pooling):
    torch.manual_seed(0)
    encoder = build(vocab_size=30, layers=1, hidden=16, heads=2)
    head = SequenceClassifier(encoder, num_labels=3, window_pooling=window_pooling).eval()
    ids = torch.randint(5, 30, (5, 6))
    mask = torch.ones_like(ids)
    mask[4, 3:] = 0  # a short last window
    hidden = encoder(ids, mask)
    logits = head(hidden, mask, document_index=torch.tensor([0, 0, 1, 1, 1]))
    assert logits.shape == (2, 3)
    # A document of one window gets what the head gives that window on its own (today's prediction).
    alone = head(hidden[:1], mask[:1], document_index=torch.tensor([0]))
    assert torch.allclose(alone, head(hidden[:1], mask[:1]), atol=1e-6)
    assert head.settings()["window_pooling"] == window_pooling
    extra = {"window_scorer.weight"} if window_pooling == "attention" else set()
    plain = SequenceClassifier(encoder, num_labels=3)
    assert set(head.state_dict()) - set(plain.state_dict()) == extra  # other heads keep today's keys


def test_window_settings_are_checked_with_their_keys(tmp_path, tokenizer):
    with pytest.raises(UserError, match=r"data.window_stride=15 must be an integer from 1 to 14"):
        Windows(tokenizer, max_seq_len=16, stride=15)
    with pytest.raises(UserError, match=r"data.window_stride=4 must go with data.long_documents=window"):
        TextClassificationDataModule(window_stride=4)
    with pytest.raises(UserError, match=r"data.long_documents='chunk' must be one of truncate, window"):
        TextClassificationDataModule(long_documents="chunk")
    with pytest.raises(UserError, match=r"data.max_windows=0 must be an integer >= 1"):
        TextClassificationDataModule(long_documents="window", max_windows=0)
    with pytest.raises(UserError, match=r"data.long_documents=window reads single texts"):
        TextClassificationDataModule(long_documents="window", text_pair_column="b")
    with pytest.raises(UserError, match=r"head.window_pooling='sum' must be one of mean, max, attention"):
        SequenceClassifier(build(vocab_size=30, layers=1, hidden=16, heads=2), 2, window_pooling="sum")


def test_runs_recorded_without_windows_truncate(tokenizer):
    assert recorded_windows({"max_seq_len": 16}, tokenizer, 16) is None  # every run before windows
    assert recorded_windows({"long_documents": "truncate"}, tokenizer, 16) is None
    again = recorded_windows(
        {"long_documents": "window", "window_stride": 5, "max_windows": 2}, tokenizer, 16
    )
    assert again.settings() == {"long_documents": "window", "window_stride": 5, "max_windows": 2}


def test_the_truncation_report_counts_the_documents_cut(tmp_path, tokenizer):
    words = ["the", "film", "good", "plot", "bad", "story", "movie"]
    texts = [" ".join(words[i % len(words)] for i in range(n)) for n in (1, 4, 5, 6, 15)]
    lengths = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]  # text tokens
    assert min(lengths) <= 14 < 15 <= max(lengths)  # some fit in 16 tokens with [CLS] and [SEP], some not
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts * 4)))
    tok_dir = tmp_path / "tok"
    save_tokenizer(tokenizer, tok_dir)
    settings = dict(train_file=str(train), tokenizer=str(tok_dir), max_seq_len=16, val_split=0.25)
    dm = TextClassificationDataModule(cache_dir=str(tmp_path / "cache"), **settings)
    dm.prepare()
    cut = sum(n + 2 > 16 for n in lengths) * 4
    assert dm.describe()["documents"]["train"]["cut"] + dm.describe()["documents"]["val"]["cut"] == cut
    assert dm.describe()["long_documents"] == "truncate"
    assert dm.train_dataset.token_ids.truncated is not None  # recorded by the token cache, not guessed
    again = TextClassificationDataModule(cache_dir=str(tmp_path / "cache"), **settings)
    again.prepare()  # from the cache: the same report
    assert again.documents == dm.documents
    assert Truncation(16).summary(dm.documents["train"]).startswith("long documents: ")
    windowed = TextClassificationDataModule(
        cache_dir=str(tmp_path / "cache"), long_documents="window", window_stride=7, **settings
    )
    windowed.prepare()
    described = windowed.describe()
    assert described["long_documents"] == "window" and described["window_stride"] == 7
    assert described["max_windows"] == 16
    total = {
        k: sum(s[k] for s in described["documents"].values())
        for k in ("documents", "longer_than_window", "cut")
    }
    assert total == {"documents": 20, "longer_than_window": sum(n > 14 for n in lengths) * 4, "cut": 0}


def test_one_vector_per_document_from_its_windows(tokenizer):
    from encoderlab.embedding.windows import encode_windows
    from encoderlab.models.heads import pool

    torch.manual_seed(0)
    encoder = build(vocab_size=tokenizer.get_vocab_size(), layers=1, hidden=16, heads=2).eval()
    texts = ["the film", "the movie plot " * 12, "a scene"]
    vectors = encode_windows(encoder, tokenizer, texts, max_seq_len=10, window_stride=4, batch_size=2)
    assert vectors.shape == (3, 16)
    with torch.no_grad():
        short = TextClassificationDataModule.prediction_batch(tokenizer, 10, texts[:1])
        assert short["input_ids"].shape[1] < 10  # one window
        alone = pool(encoder(short["input_ids"], short["attention_mask"]), short["attention_mask"], "mean")
        assert torch.allclose(vectors[0], alone[0], atol=1e-5)  # one window: the vector truncation gives
        windows = Windows(tokenizer, 10, 4, max_windows=16).inputs(tokenizer, texts[1:2])
        assert len(windows["document_index"]) > 3
        each = pool(
            encoder(windows["input_ids"], windows["attention_mask"]), windows["attention_mask"], "mean"
        )
        assert torch.allclose(vectors[1], each.mean(0), atol=1e-5)
    unit = encode_windows(encoder, tokenizer, texts, 10, 4, window_pooling="max", normalize=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_the_data_doctor_counts_windows_and_the_rows_they_cut(tmp_path, tokenizer):
    from encoderlab.reporting.data_diagnosis import DataSpec, check_truncation, read_data

    words = ["the", "film", "good", "plot", "bad", "story", "movie"]
    texts = [" ".join(words[i % len(words)] for i in range(n)) for n in (2, 3, 9, 14, 30, 30)]
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts)))
    save_tokenizer(tokenizer, tmp_path / "tok")
    spec = DataSpec(train=train, tokenizer=tmp_path / "tok", max_seq_len=12, long_documents="window")
    lengths = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
    needed = [1 + max(0, -(-(n - 10) // 5)) for n in lengths]  # 10 text tokens a window, one every 5
    capped = replace(spec, window_stride=5, max_windows=3)
    findings = {f.check: f for f in check_truncation(read_data(capped))}
    many = sum(k > 1 for k in needed)
    assert findings["windows"].what.startswith(f"{many} of 6 train rows")
    assert findings["truncation"].what.startswith(f"{sum(k > 3 for k in needed)} of 6 train rows")
    assert f"need more than data.max_windows=3 windows and get cut (most {max(needed)};" in (
        findings["truncation"].what
    )
    whole = {f.check for f in check_truncation(read_data(replace(capped, max_windows=None)))}
    assert whole == {"windows"}  # no cap: nothing cut


def test_encoderlab_embed_reads_long_texts_in_windows(tmp_path, tokenizer):
    from encoderlab.cli.embed import embed_file
    from encoderlab.embedding.record import EmbeddingRecord
    from encoderlab.embedding.windows import encode_windows
    from encoderlab.formats.export import export_encoder

    save_tokenizer(tokenizer, tmp_path / "tok")
    torch.manual_seed(0)
    encoder = build(vocab_size=tokenizer.get_vocab_size(), layers=1, hidden=16, heads=2, max_positions=32)
    export = export_encoder(encoder.eval(), tmp_path / "tok", tmp_path / "export")
    texts = ["the film", "the movie plot " * 12]
    given = tmp_path / "texts.txt"
    given.write_text("\n".join(texts) + "\n")
    out = tmp_path / "vectors.npy"
    args = dict(pooling="mean", max_seq_len=10, progress=False, windows="max", window_stride=4)
    files, record = embed_file(str(export), str(given), str(out), **args)
    expected = encode_windows(encoder, tokenizer, texts, 10, 4, pooling="mean", window_pooling="max")
    assert np.allclose(np.load(files.vectors), expected.numpy(), atol=1e-5)
    assert record.windows == {"window_stride": 4, "max_windows": 16, "window_pooling": "max"}
    assert EmbeddingRecord.read(files.record).windows == record.windows
    truncated = embed_file(str(export), str(given), str(tmp_path / "cut.npy"), pooling="mean", progress=False)
    assert truncated[1].windows is None
    assert not np.allclose(np.load(truncated[0].vectors)[1], expected[1].numpy(), atol=1e-3)
    with pytest.raises(UserError, match="--window-stride=20 must be an integer from 1 to 8"):
        embed_file(str(export), str(given), str(tmp_path / "v.npy"), **{**args, "window_stride": 20})
    with pytest.raises(UserError, match="--window-stride goes with --windows"):
        embed_file(str(export), str(given), str(tmp_path / "w.npy"), window_stride=4, progress=False)
