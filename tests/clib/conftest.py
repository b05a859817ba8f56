"""Fixtures for the C device library's conformance tests: build it once, skip without a C
compiler (CI has gcc; the skip says why)."""

from __future__ import annotations

import pytest

from .clib import Library, build, compiler


@pytest.fixture(scope="session")
def library() -> Library:
    if compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the C device library cannot be built")
    return Library(build() / "libwirelet_host.so")
