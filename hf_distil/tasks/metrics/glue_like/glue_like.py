"""GLUE-style metrics by task: Matthews for CoLA, Pearson/Spearman for STS-B, accuracy and F1 for MRPC and
QQP, accuracy for the rest (IMDb, SST-2, the offline polarity demo, ...). NumPy only, offline."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "GLUE-style task metrics computed locally (numpy), loadable offline by path."
_CITATION = "Wang et al. 2018, GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding."
_KWARGS_DESCRIPTION = "predictions: labels (or scores for stsb); references: gold labels (or scores)."
REGRESSION = ("stsb",)


def _matthews(pred, ref):
    tp = float(np.sum((pred == 1) & (ref == 1)))
    tn = float(np.sum((pred == 0) & (ref == 0)))
    fp = float(np.sum((pred == 1) & (ref == 0)))
    fn = float(np.sum((pred == 0) & (ref == 1)))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def _f1(pred, ref):
    tp = float(np.sum((pred == 1) & (ref == 1)))
    fp = float(np.sum((pred == 1) & (ref == 0)))
    fn = float(np.sum((pred == 0) & (ref == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _ranks(x):
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):  # ties share their mean rank
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _pearson(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueLike(evaluate.Metric):
    def _info(self):
        kind = "float32" if self.config_name in REGRESSION else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)}),
        )

    def _compute(self, predictions, references):
        pred, ref = np.asarray(predictions), np.asarray(references)
        if self.config_name == "cola":
            return {"matthews_correlation": float(_matthews(pred, ref))}
        if self.config_name == "stsb":
            return {"pearson": _pearson(pred, ref), "spearmanr": _pearson(_ranks(pred), _ranks(ref))}
        accuracy = float(np.mean(pred == ref))
        if self.config_name in ("mrpc", "qqp"):
            return {"accuracy": accuracy, "f1": float(_f1(pred, ref))}
        return {"accuracy": accuracy}
