"""Downstream tasks, loaded the same way by every recipe that fine-tunes or distils a classifier: the GLUE tasks,
IMDb and SQuAD from the Hub, local CSV/JSON files with the same columns, and two offline demos from gensim's test
data (pang_lee_polarity: 200 movie-review sentences; mini_newsgroup: 200 posts from alt.atheism and sci.space)."""

from __future__ import annotations

import io
import pickle
import re
import zlib
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

# task -> (Hub dataset, config, text columns, number of labels, evaluation split); Hub dataset None: an offline demo
TASKS = {
    "cola": ("nyu-mll/glue", "cola", ("sentence", None), 2, "validation"),
    "sst2": ("nyu-mll/glue", "sst2", ("sentence", None), 2, "validation"),
    "mrpc": ("nyu-mll/glue", "mrpc", ("sentence1", "sentence2"), 2, "validation"),
    "qqp": ("nyu-mll/glue", "qqp", ("question1", "question2"), 2, "validation"),
    "stsb": ("nyu-mll/glue", "stsb", ("sentence1", "sentence2"), 1, "validation"),
    "mnli": ("nyu-mll/glue", "mnli", ("premise", "hypothesis"), 3, "validation_matched"),
    "qnli": ("nyu-mll/glue", "qnli", ("question", "sentence"), 2, "validation"),
    "rte": ("nyu-mll/glue", "rte", ("sentence1", "sentence2"), 2, "validation"),
    "wnli": ("nyu-mll/glue", "wnli", ("sentence1", "sentence2"), 2, "validation"),
    "imdb": ("stanfordnlp/imdb", None, ("text", None), 2, "test"),
    "squad": ("rajpurkar/squad", None, ("question", "context"), 2, "validation"),
    "polarity": (None, None, ("sentence", None), 2, "validation"),
    "newsgroups": (None, None, ("text", None), 2, "validation"),
}
MAIN_METRIC = {"cola": "matthews_correlation", "stsb": "pearson", "mrpc": "f1", "qqp": "f1", "squad": "f1"}


def _gensim_test_file(name: str) -> Path:
    import gensim

    return Path(gensim.__file__).parent / "test" / "test_data" / name


def _every_fifth_held_out(data: dict[str, list]) -> datasets.DatasetDict:
    full = datasets.Dataset.from_dict(data)
    return datasets.DatasetDict(
        {
            "train": full.filter(lambda _, i: i % 5 != 0, with_indices=True),
            "validation": full.filter(lambda _, i: i % 5 == 0, with_indices=True),
        }
    )


def polarity_demo() -> datasets.DatasetDict:
    """gensim's 200 labelled sentences (100 negative, 100 positive); every fifth is held out."""
    text = _gensim_test_file("pang_lee_polarity.cor").read_bytes().decode("cp1252", errors="replace")
    # the 2005 corpus is Windows-1252, not UTF-8
    rows = [line.split(" ", 1) for line in text.splitlines() if line.strip()]
    return _every_fifth_held_out(
        {"sentence": [text.strip() for _, text in rows], "label": [int(tag == "__label__pos") for tag, _ in rows]}
    )


class _NewsgroupsUnpickler(pickle.Unpickler):
    """gensim ships mini_newsgroup as a zlib-compressed Python 2 pickle of a scikit-learn `Bunch` (a dict). Only
    the handful of classes that file needs are allowed, and `Bunch` is read as a plain dict: no scikit-learn, and
    nothing else that a pickle could name gets called."""

    def find_class(self, module: str, name: str):
        import numpy

        if (module, name) == ("sklearn.datasets.base", "Bunch"):
            return dict
        if module == "numpy.core.multiarray" and name == "_reconstruct":  # numpy.core became numpy._core in 2.0
            return (getattr(numpy, "_core", None) or numpy.core).multiarray._reconstruct
        if (module, name) in {("copy_reg", "_reconstructor"), ("__builtin__", "dict"), ("numpy", "ndarray")}:
            return super().find_class(module, name)
        if (module, name) == ("numpy", "dtype"):
            return numpy.dtype
        raise pickle.UnpicklingError(f"mini_newsgroup: unexpected class {module}.{name}")


# Quoted lines (">", "|", initials as in "MB>") and their lead-ins; header lines repeated inside a body (mail gateways
# copy them: "To: Newsgroups: sci.space"); a signature starts at a line of dashes.
_QUOTE = re.compile(r"^\s*\w{0,3}[>|]|(writes|wrote|says|said)( in [^:]*)?:[\s>]*$|^In article", re.I)
_HEADER_LINE = re.compile(
    r"^\s*(To:\s*)?(Newsgroups|Path|From|Message-ID|Organization|Date|Reply-To|References|Distribution|Lines|Sender"
    r"|Keywords|Summary|Nntp-Posting-Host|Followup-To|X-[\w-]+):",
    re.I,
)


def newsgroup_text(post: str) -> str:
    """A post without what would give its group away or is not its author's: the headers (which name the group)
    except the subject, quoted lines and their "In article ... writes:" lead-ins, and the signature. As
    scikit-learn's remove=("headers", "footers", "quotes"), the usual way to score 20 Newsgroups, plus the header
    lines that mail gateways repeat inside a body."""
    header, _, body = post.partition("\n\n")
    subject = next((line[8:].strip() for line in header.splitlines() if line.startswith("Subject:")), "")
    subject = re.sub(r"^(re:\s*)+", "", subject, flags=re.I)
    lines = []
    for line in body.splitlines():
        if re.fullmatch(r"\s*-{2,}\s*", line):
            break
        if not (_QUOTE.search(line) or _HEADER_LINE.search(line)):
            lines.append(line)
    return " ".join(" ".join([subject, *lines]).split())


def newsgroups_demo() -> datasets.DatasetDict:
    """gensim's 200 newsgroup posts, alt.atheism (0) against sci.space (1), 100 each, without headers, quotes
    and signatures (`newsgroup_text`); every fifth is held out."""
    bunch = _NewsgroupsUnpickler(
        io.BytesIO(zlib.decompress(_gensim_test_file("mini_newsgroup").read_bytes())), encoding="latin1"
    ).load()
    return _every_fifth_held_out(
        {"text": [newsgroup_text(post) for post in bunch["data"]], "label": [int(t) for t in bunch["target"]]}
    )


OFFLINE_DEMOS = {"polarity": polarity_demo, "newsgroups": newsgroups_demo}


def load_task(
    name: str, train_file: str | None = None, validation_file: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, evaluation) of a task in TASKS: from local CSV/JSON files when given, else an offline demo or the
    Hub."""
    hub_id, config, _, _, eval_split = TASKS[name]
    if train_file:
        files = {"train": train_file, "validation": validation_file or train_file}
        raw = datasets.load_dataset("csv" if train_file.endswith(".csv") else "json", data_files=files)
        return raw["train"], raw["validation"]
    raw = OFFLINE_DEMOS[name]() if hub_id is None else datasets.load_dataset(hub_id, config)
    return raw["train"], raw[eval_split]


def encode_pairs(
    batch: dict, tokenizer: PreTrainedTokenizerBase, columns: tuple[str, str | None], max_length: int
) -> dict:
    first, second = columns
    texts = (batch[first],) if second is None else (batch[first], batch[second])
    return tokenizer(*texts, truncation=True, max_length=max_length)
