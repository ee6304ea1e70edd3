"""Offline part-of-speech tags, for the POS-guided word replacement of Tang et al.'s augmentation (`augment.py`).

The tagger is Honnibal's greedy averaged perceptron (2013; Penn Treebank tags, about 97% on WSJ) with the trained
model that the PyPI package textblob-aptagger 0.2.0 ships (MIT licence, 8 MB). Install it without dependencies,
`pip install --no-deps textblob-aptagger==0.2.0`: only its model file is read here, by the 40-line decoder below,
so neither TextBlob nor NLTK (whose own tagger models download from GitHub, outside the package registries) is
needed. Why this one: of the taggers on PyPI and Debian, it is the one that installs from the registry with its
model inside, is small, is pure Python and tags in context. Debian's WordNet lists give a word's possible parts of
speech without context and cover only nouns, verbs, adjectives and adverbs; spaCy's and NLTK's models are not on
PyPI.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

PACKAGE = "textblob_aptagger"
MODEL_FILE = "trontagger-0.1.0.pickle"
INSTALL = "pip install --no-deps textblob-aptagger==0.2.0"


class _ModelUnpickler(pickle.Unpickler):
    """The model file is a pickle of (weights, tag dictionary, classes): dicts, strings, floats and one set. Any
    other class it named would be refused rather than imported and called."""

    def find_class(self, module: str, name: str):
        if (module, name) in {("builtins", "set"), ("__builtin__", "set")}:
            return set
        raise pickle.UnpicklingError(f"{MODEL_FILE}: unexpected class {module}.{name}")


def model_path() -> Path:
    """The shipped model file, found without importing the package (whose __init__ imports TextBlob)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"POS-guided replacement needs the offline tagger model; install it with {INSTALL}.")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


class PerceptronTagger:
    """Greedy left-to-right tagging with an averaged perceptron over word, affix and previous-tag features.

    The decoding and features are those the shipped model was trained with (textblob_aptagger/taggers.py);
    changing any of them would need a retrained model.
    """

    START = ("-START-", "-START2-")
    END = ("-END-", "-END2-")

    def __init__(self, weights: dict[str, dict[str, float]], tagdict: dict[str, str], classes: set[str]) -> None:
        self.weights, self.tagdict, self.classes = weights, tagdict, sorted(classes)

    @classmethod
    def load(cls, path: str | Path | None = None) -> PerceptronTagger:
        with open(path or model_path(), "rb") as file:
            weights, tagdict, classes = _ModelUnpickler(file, encoding="latin1").load()
        return cls(weights, tagdict, classes)

    @staticmethod
    def _normalise(word: str) -> str:
        if "-" in word and word[0] != "-":
            return "!HYPHEN"
        if word.isdigit() and len(word) == 4:
            return "!YEAR"
        if word[0].isdigit():
            return "!DIGITS"
        return word.lower()

    def _features(self, i: int, word: str, context: list[str], prev: str, prev2: str) -> list[str]:
        i += len(self.START)
        return [
            "bias",
            f"i suffix {word[-3:]}",
            f"i pref1 {word[0]}",
            f"i-1 tag {prev}",
            f"i-2 tag {prev2}",
            f"i tag+i-2 tag {prev} {prev2}",
            f"i word {context[i]}",
            f"i-1 tag+i word {prev} {context[i]}",
            f"i-1 word {context[i - 1]}",
            f"i-1 suffix {context[i - 1][-3:]}",
            f"i-2 word {context[i - 2]}",
            f"i+1 word {context[i + 1]}",
            f"i+1 suffix {context[i + 1][-3:]}",
            f"i+2 word {context[i + 2]}",
        ]

    def _predict(self, features: list[str]) -> str:
        scores: dict[str, float] = defaultdict(float)
        for feature in features:  # each feature counts once: the features of one word are distinct strings
            for label, weight in self.weights.get(feature, {}).items():
                scores[label] += weight
        return max(self.classes, key=lambda label: (scores[label], label))  # ties: the later tag name, as trained

    def tag(self, words: Sequence[str]) -> list[str]:
        """One Penn Treebank tag per word of a tokenised sentence (or text: previous tags carry across)."""
        context = [*self.START, *(self._normalise(w) for w in words), *self.END]
        prev, prev2 = self.START
        tags = []
        for i, word in enumerate(words):
            tag = self.tagdict.get(word) or self._predict(self._features(i, word, context, prev, prev2))
            tags.append(tag)
            prev2, prev = prev, tag
        return tags
