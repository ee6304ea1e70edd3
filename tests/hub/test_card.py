"""The cards rendered from typed reports alone, and the loss plot: no training, no Hub."""

from __future__ import annotations

from huggingface_hub import ModelCard
from journeys.test_readme import assert_card_states_only_what_is_known

from hf_distil.hub import (
    BiLSTMCardReport,
    CardReport,
    CpuTime,
    EmbeddingCardReport,
    HeldOut,
    Score,
    Similarity,
    Speed,
    loss_figure,
    render_bilstm_card,
    render_embedding_card,
    render_model_card,
    save_model_card,
)
from hf_distil.hub.push import files_to_upload


def test_an_unmeasured_teacher_value_shows_a_dash_not_none():
    report = CardReport(
        teacher_results=HeldOut(accuracy=0.5),  # a teacher does not agree with itself: never measured
        student_results=HeldOut(accuracy=0.4, teacher_agreement=0.55),
    )
    card = str(render_model_card(report, "alice/agree"))
    assert "| top-1 agreement with the teacher (%) | — | 55.00 |" in card
    assert "| top-1 accuracy at [MASK] (%) | 50.00 | 40.00 |" in card
    assert "None" not in card.split("---", 2)[2]


def test_an_empty_report_gives_a_card_that_states_nothing_unknown(tmp_path):
    card = save_model_card(CardReport(), tmp_path, "alice/bare")
    text = str(card)
    assert_card_states_only_what_is_known(text, {p.name: b"" for p in tmp_path.iterdir()})
    assert "None" not in text and "## Training recipe" not in text and "loss_terms.png" not in text
    assert "A student distilled from its teacher" in text
    assert ModelCard((tmp_path / "README.md").read_text()).data.model_name == "alice/bare"


def test_a_trimmed_student_card_states_its_vocabulary_and_where_its_tokenizer_comes_from():
    trimmed = str(render_model_card(CardReport(vocabulary_size=8000, teacher_vocabulary_size=30522), "alice/v8000"))
    assert "| vocabulary (WordPiece tokens) | 30,522 | 8,000 (trimmed) |" in trimmed
    assert "trimmed to **8,000 of the teacher's 30,522 WordPiece tokens**" in trimmed
    assert "its tokenizer is the teacher's with the other tokens removed" in trimmed
    untrimmed = str(render_model_card(CardReport(student_parameters=10**6), "alice/full"))
    assert "vocabulary" not in untrimmed.lower().split("## how to use")[0]


def test_the_loss_plot_says_what_it_shows():
    history = [{"loss": 3.0, "loss_ce": 1.0, "step": 1}, {"loss": 2.0, "loss_ce": 0.5, "step": 2}, {"eval_loss": 1}]
    (axes,) = loss_figure(history).axes
    assert axes.get_title() and axes.get_ylabel().startswith("loss") and axes.get_xlabel() == "optimizer step"
    assert [line.get_label() for line in axes.get_lines()] == ["loss", "loss_ce"]
    assert loss_figure([{"eval_loss": 1.0, "step": 1}]) is None


def test_the_bilstm_card_states_its_report():
    report = BiLSTMCardReport(
        teacher="default-teacher",
        hidden_size=150,
        classifier_size=200,
        pair_encoder=True,
        transfer_examples=1234,
        augmentation="+ Tang et al. rules",
        task="mrpc",
        metric="f1",
        seeds=2,
        scores=[Score("teacher (fine-tuned)", 80.0, 1.0), Score("BiLSTM distilled + Tang et al. rules", 70.5, 2.25)],
        teacher_parameters=22_700_000,
        student_parameters=12_400_000,
        cpu_times=[CpuTime("PyTorch fp32", 1, 2, teacher_ms=10.0, student_ms=2.0)],
    )
    card = str(render_bilstm_card(report, "alice/bilstm"))
    assert "pipeline_tag: text-classification" in card and "[a, b, |a − b|, a ⊙ b]" in card
    assert "1234 examples (+ Tang et al. rules)" in card and "mean ± sd over 2 seeds" in card
    assert "| BiLSTM distilled + Tang et al. rules | 70.50 ± 2.25 |" in card
    assert "| CPU time per example in PyTorch fp32, batch 1 (2 threads) | 10.00 ms | 2.00 ms (5.00x faster" in card
    assert "| parameters outside the word embeddings |" not in card  # unknown: left out


def test_an_embedding_card_states_its_scores_and_indexes_the_students():
    report = EmbeddingCardReport(
        teacher="sentence-transformers/all-MiniLM-L6-v2",
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        student_layers=3,
        teacher_layers=6,
        layer_map=[0, 2, 4],
        loss_weights={"L_embedding_cos": 1.0},
        pooling="mean pooling over the tokens, L2-normalised",
        max_seq_length=256,
        similarity_dataset="Lee, Pincombe & Welsh (2005)",
        similarity=[
            Similarity("teacher", 0.656, 0.508),
            Similarity("student (distilled)", 0.631, 0.52),
            Similarity("model2vec static (distill_from_model)", note="not run: no skeletoken"),
        ],
        agreement_sentences=1000,
        mean_cosine=0.91,
        neighbour_agreement=float("nan"),  # unknown: left out, never printed as nan
        speed=Speed(100, encoder_teacher_seconds=2.0, encoder_student_seconds=1.0),
        hardware="CPU, 2 threads",
    )
    card = render_embedding_card(report, "alice/mini-embedder")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "sentence-similarity" and data["library_name"] == "sentence-transformers"
    (index,) = data["model-index"]
    metrics = {m["type"]: m["value"] for m in index["results"][0]["metrics"]}
    assert metrics == {"pearson": 0.631, "spearman": 0.52}  # the student's row, not the teacher's
    assert index["results"][0]["task"]["type"] == "sentence-similarity"
    text = str(card)
    assert "| student (distilled) | 0.631 | 0.520 |" in text and "| teacher | 0.656 | 0.508 |" in text
    assert "| model2vec static (distill_from_model) | — | not run: no skeletoken |" in text
    assert "| mean cosine between student and teacher embeddings | 0.910 |" in text and "nan" not in text
    assert "runs **2.00x faster than the teacher**" in text and "teacher's layers 0, 2, 4" in text


def test_the_sentence_transformers_modules_are_uploaded(tmp_path):
    for name in ("config.json", "modules.json", "1_Pooling/config.json", "2_Normalize/config.json", "x/config.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    uploaded, left_out = files_to_upload(tmp_path)
    assert uploaded == ["1_Pooling/config.json", "2_Normalize/config.json", "config.json", "modules.json"]
    assert left_out == ["x/config.json"]
