"""The virtual-kubelet baseline's build: the pinned release plus our patch, never stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench import vk


def test_every_patch_is_in_the_binary_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "vk"
    shutil.copytree(vk.MODULE_DIR, module)
    monkeypatch.setattr(vk, "MODULE_DIR", module)
    monkeypatch.setattr(vk, "PATCHES", sorted(module.glob("*.patch")))
    before = vk.binary_path()
    patch = vk.PATCHES[0]
    patch.write_text(patch.read_text() + "\n")
    assert vk.binary_path() != before


@pytest.mark.skipif(shutil.which("go") is None, reason="the go toolchain is not installed")
def test_patch_applies_to_the_pinned_release(tmp_path: Path) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    build_module = vk._patched_build_module("go", env, tmp_path)
    mock = tmp_path / "src/cmd/virtual-kubelet/internal/provider/mock/mock.go"
    assert "p.podsLock.Lock()" in mock.read_text()
    assert f"replace {vk.VK_MODULE} => ../src" in (build_module / "go.mod").read_text()
