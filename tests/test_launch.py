"""keep_freed_memory: a large tensor freed and allocated again costs no new page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process (a test process's heap is fragmented by whatever ran before): page faults of the
# fourth 100 MB tensor, written then freed; 100 MB is above glibc's largest mmap threshold (32 MB).
PROBE = """
import resource, sys, torch
from hf_distil.launch import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(25_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_blocks_are_reused_instead_of_faulted_in_again():
    assert faults("default") > 20_000  # one fault per 4 KB page, every time
    assert faults("keep") < 1_000
