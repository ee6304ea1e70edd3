from collections import Counter

from hf_distil.tasks.datasets import TASKS, load_task, newsgroup_text

POST = """Newsgroups: alt.atheism
Path: cantaloupe.srv.cs.cmu.edu!news
From: someone@example.org
Subject: Re: Re: Biblical Rape
Lines: 9

In article <1993Apr05.174537.14962@watson.ibm.com>
strom@Watson.Ibm.Com (Rob Strom) writes:
>I am absolutely NOT a "Messianic Jew".
| quoted too
Another mistake.   Sorry, I should have read more carefully.
--
Benedikt, signature line
"""


def test_newsgroup_text_keeps_the_subject_and_the_authors_words_only():
    assert newsgroup_text(POST) == "Biblical Rape Another mistake. Sorry, I should have read more carefully."


def test_offline_demos_are_balanced_200_example_tasks_split_160_40():
    for name in ("polarity", "newsgroups"):
        train, held_out = load_task(name)
        column = TASKS[name][2][0]
        assert (len(train), len(held_out)) == (160, 40)
        assert sorted(Counter(train["label"]).values()) == ([79, 81] if name == "newsgroups" else [80, 80])
        assert all(text.strip() for text in list(train[column]) + list(held_out[column]))
    train, held_out = load_task("newsgroups")
    texts = list(train["text"]) + list(held_out["text"])
    assert not [t for t in texts if "Newsgroups:" in t or "Path:" in t or "writes:" in t]
    assert Counter(held_out["label"]) == {0: 21, 1: 19}
