import pytest
import torch

from hf_distil import DataCollatorForDistillation, token_counts


@pytest.fixture
def features(tokenizer, texts):
    return [dict(tokenizer(t, return_token_type_ids=False)) for t in texts[:16]]


def test_batch_has_labels_padding_and_no_nsp(tokenizer, features):
    batch = DataCollatorForDistillation(tokenizer, seed=0)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}  # no token types, no next-sentence labels
    assert batch["input_ids"].shape == batch["labels"].shape
    pads = batch["attention_mask"] == 0
    assert (batch["input_ids"][pads] == tokenizer.pad_token_id).all() and (batch["labels"][pads] == -100).all()
    specials = torch.isin(batch["labels"], torch.tensor(tokenizer.all_special_ids))
    assert not specials.any()


def test_same_seed_same_masks_new_masks_every_batch_and_epoch(tokenizer, features):
    a, b = DataCollatorForDistillation(tokenizer, seed=7), DataCollatorForDistillation(tokenizer, seed=7)
    first, again = a(features), b(features)
    assert torch.equal(first["labels"], again["labels"]) and torch.equal(first["input_ids"], again["input_ids"])
    assert not torch.equal(DataCollatorForDistillation(tokenizer, seed=8)(features)["labels"], first["labels"])
    assert not torch.equal(a(features[:8])["labels"], first["labels"][:8, : a(features[:8])["labels"].shape[1]])
    a.set_epoch(1)
    assert not torch.equal(a(features)["labels"], first["labels"])  # the same batch, next epoch: new masks


def test_masking_leaves_the_global_rng_alone(tokenizer, features):
    torch.manual_seed(11)
    DataCollatorForDistillation(tokenizer)(features)
    after = torch.rand(1)
    torch.manual_seed(11)
    assert torch.equal(torch.rand(1), after)


def test_token_types_are_padded_and_passed_on(tokenizer, features):
    batch = DataCollatorForDistillation(tokenizer, seed=0)(features)
    assert "token_type_ids" not in batch
    with_types = [dict(f, token_type_ids=[0] * len(f["input_ids"])) for f in features]
    batch = DataCollatorForDistillation(tokenizer, seed=0)(with_types)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape


def test_token_counts_bias_the_choice(tokenizer, texts):
    counts = token_counts(texts, tokenizer)
    assert counts.shape == (len(tokenizer),)
    the = tokenizer.convert_tokens_to_ids("the")
    assert counts[the] == sum(t.split().count("the") for t in texts)
    assert counts[tokenizer.cls_token_id] == len(texts)
    counts = token_counts(texts + ["the " * 2000], tokenizer)  # "the" now dominates the corpus
    features = [dict(tokenizer(t, return_token_type_ids=False)) for t in texts]
    frequent = weighted = 0
    plain, smoothed = (
        DataCollatorForDistillation(tokenizer, seed=1),
        DataCollatorForDistillation(tokenizer, counts, seed=1),
    )
    for _ in range(30):
        frequent += int((plain(features)["labels"] == the).sum())
        weighted += int((smoothed(features)["labels"] == the).sum())
    assert weighted < 0.5 * frequent


def test_token_counts_accepts_datasets_and_ids(tokenizer, texts):
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts})
    expected = token_counts(texts, tokenizer)
    assert torch.equal(token_counts(ds, tokenizer), expected)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert torch.equal(token_counts(datasets.Dataset.from_dict({"input_ids": ids}), tokenizer), expected)


def test_whole_word_masking_keeps_words_whole(tokenizer):
    features = [dict(tokenizer("the playing cats jumped unable walking talked")) for _ in range(8)]
    collator = DataCollatorForDistillation(tokenizer, whole_word_masking=True, mlm_probability=0.3, seed=3)
    cont = torch.tensor([t.startswith("##") for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))])
    original = torch.tensor([f["input_ids"] for f in features])
    for _ in range(20):
        chosen = collator(features)["labels"] != -100
        # A continuation piece is chosen exactly when the piece before it is.
        inner = cont[original]
        assert torch.equal(chosen[:, 1:][inner[:, 1:]], chosen[:, :-1][inner[:, 1:]])


def test_causal_mode_labels_are_the_inputs(tokenizer, features):
    batch = DataCollatorForDistillation(tokenizer, mlm=False)(features)
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"][real], batch["input_ids"][real]) and (batch["labels"][~real] == -100).all()


def test_wrong_count_table_fails_in_one_line(tokenizer):
    with pytest.raises(ValueError, match="token_counts has 3 entries but the tokenizer has"):
        DataCollatorForDistillation(tokenizer, token_counts=[1, 2, 3])
