import importlib.util
import pickle

import pytest

from hf_distil.errors import UsageError
from hf_distil.tasks.pos_tagger import INSTALL, PerceptronTagger, model_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("textblob_aptagger") is None, reason=f"the tagger model is not installed: {INSTALL}"
)


@pytest.fixture(scope="module")
def tagger():
    return PerceptronTagger.load()


def test_tags_in_context(tagger):
    words = "The quick brown fox jumps over the lazy dog .".split()
    assert tagger.tag(words) == ["DT", "JJ", "NN", "NN", "NNS", "IN", "DT", "JJ", "NN", "."]
    # the same word, tagged by its neighbours: a verb after "to", a noun after "the"
    assert tagger.tag("I want to run .".split())[3] == "VB"
    assert tagger.tag("The run was long .".split())[1] == "NN"
    assert tagger.tag([]) == []


def test_the_model_file_may_name_no_class_but_set(tmp_path):
    assert model_path().name == "trontagger-0.1.0.pickle"
    evil = tmp_path / "model.pickle"
    evil.write_bytes(pickle.dumps((print, {}, set())))
    with pytest.raises(pickle.UnpicklingError, match="unexpected class builtins.print"):
        PerceptronTagger.load(evil)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="pip install --no-deps textblob-aptagger==0.2.0"):
        model_path()
