"""The docs as a user reads them: every ```python block of README.md and docs/*.md runs as written, every relative
link and anchor resolves, every flag a ```bash block passes to one of our scripts exists, and the site builds.

Each block runs in a fresh interpreter from an empty folder, offline (HF_HUB_OFFLINE=1), with the repository on
PYTHONPATH; a block that publishes gets the local Hub of `tests/hub_server.py`. The README's "Use it in your own code"
block is left to test_readme.py, which also checks what it uploads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from journeys.test_readme import readme_block, script_help  # tests/ is on sys.path (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SCRIPT = re.compile(r"((?:recipes|benchmarks|examples/\w+)/\w+\.py)(.*)")


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text()) if lang == language]


def python_blocks() -> list[tuple[str, str]]:
    """(page:n, code) of every ```python block but the README block that test_readme.py runs."""
    tested_elsewhere = readme_block("Use it in your own code")
    found = []
    for page in PAGES:
        for n, code in enumerate(blocks(page, "python"), start=1):
            if code != tested_elsewhere:
                found.append((f"{page_name(page)}:{n}", code))
    return found


BLOCKS = python_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_python_block_runs_as_written(where, code, tmp_path, request):
    if "push_to_hub(" in code:  # a block that publishes: to the local Hub, with a token
        request.getfixturevalue("hub")
        extra = {"HF_TOKEN": "hf_docs_token", "HF_HUB_OFFLINE": "0"}
    else:
        extra = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}
    (tmp_path / "block.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{where}\n" + done.stdout[-2000:] + done.stderr[-3000:]


def test_the_pages_that_teach_an_api_show_it_in_a_block_that_runs():
    with_blocks = {where.split(":")[0] for where, _ in BLOCKS}
    expected = {
        "docs/getting-started.md",
        "docs/losses.md",
        "docs/beyond-distilbert.md",
        "docs/teacher-caching.md",
        "docs/deployment.md",
        "docs/other-students.md",
        "docs/task-distillation.md",
        "docs/offline-teacher.md",
    }
    assert expected <= with_blocks, sorted(expected - with_blocks)


def slugify(heading: str) -> str:
    """The anchor Python-Markdown's toc (mkdocs) gives a heading; GitHub's agrees for these headings."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    prose = FENCE.sub("", page.read_text())
    return {slugify(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", prose, re.M)}


def relative_links() -> list[tuple[str, str]]:
    """(page, target) of every link that is not a URL, outside code blocks and code spans."""
    found = []
    for page in PAGES:
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
        for target in LINK.findall(prose):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                found.append((page_name(page), target))
    return found


def test_the_link_scan_finds_the_links_between_pages():
    assert len({target for _, target in relative_links()}) > 20


@pytest.mark.parametrize("page, target", relative_links(), ids=lambda x: x)
def test_every_relative_link_and_anchor_resolves(page, target):
    path, _, anchor = target.partition("#")
    file = (ROOT / page).parent / path if path else ROOT / page
    assert file.exists(), f"{page} links to {target}, which does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in anchors(file), f"{page} links to {target}: {file.name} has no heading with that anchor"


def doc_commands() -> list[tuple[str, str, list[str]]]:
    """(page, script, its --flags) for every command line of a docs page's ```bash blocks that runs a script of
    ours (the README's are test_readme.py's). Flags after a lone `--` go to another program (ablation.py)."""
    commands = []
    for page in PAGES[1:]:
        for block in blocks(page, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                match = SCRIPT.search(line.split("#", 1)[0])
                if match:
                    own = match.group(2).split(" -- ", 1)[0]
                    commands.append((page_name(page), match.group(1), re.findall(r"(--\w+)", own)))
    return commands


@pytest.mark.slow
@pytest.mark.parametrize(
    "page, script, flags", doc_commands(), ids=lambda x: x if isinstance(x, str) else " ".join(x) or "no flags"
)
def test_every_flag_in_the_docs_exists(page, script, flags):
    assert (ROOT / script).exists(), f"{page}: {script} does not exist"
    done = script_help(script)
    assert done.returncode == 0, done.stderr[-2000:]
    unknown = set(flags) - set(re.findall(r"(--\w+)", done.stdout))
    assert not unknown, f"{page}: {script} is passed {sorted(unknown)}, which its --help does not list"


@pytest.mark.slow
def test_the_site_builds_with_mkdocs_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()
