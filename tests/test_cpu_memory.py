"""keep_freed_memory: a large tensor freed and allocated again costs no new page faults."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from hf_distil.cpu_memory import keep_freed_memory


def _faults_of_fresh_large_tensor() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(25_000_000)  # 100 MB, above glibc's largest mmap threshold (32 MB), written then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_blocks_are_reused_instead_of_faulted_in_again():
    assert keep_freed_memory()
    _faults_of_fresh_large_tensor()  # the heap grows once
    assert _faults_of_fresh_large_tensor() < 1000  # against ~24,400 (one per 4 KB page) with glibc's default
