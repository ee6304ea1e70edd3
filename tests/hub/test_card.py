"""The cards rendered from typed reports alone, and the loss plot: no training, no Hub."""

from __future__ import annotations

from huggingface_hub import ModelCard
from journeys.test_readme import assert_card_states_only_what_is_known

from hf_distil.hub import (
    BiLSTMCardReport,
    CardReport,
    CpuTime,
    HeldOut,
    Score,
    loss_figure,
    render_bilstm_card,
    render_model_card,
    save_model_card,
)


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
