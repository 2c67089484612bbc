from pathlib import Path

import pytest
from sipfleet.devcluster import binaries


def _fake_build(root: Path, with_marker: bool) -> None:
    kube = root / f"kube-{binaries.KUBE_VERSION}"
    helm = root / f"helm-{binaries.HELM_VERSION}"
    (kube / "bin").mkdir(parents=True)
    (helm / "bin").mkdir(parents=True)
    for name in binaries.KUBE_BINARIES:
        exe = kube / "bin" / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (helm / "bin" / "helm").write_text("#!/bin/sh\n")
    (helm / "bin" / "helm").chmod(0o755)
    (helm / ".complete").touch()
    if with_marker:
        (kube / ".complete").touch()


def test_cache_with_marker_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPFLEET_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    _fake_build(tmp_path, with_marker=True)
    bins = binaries.locate(build_if_missing=False)
    assert (
        bins.kube_apiserver == tmp_path / f"kube-{binaries.KUBE_VERSION}" / "bin" / "kube-apiserver"
    )
    assert bins.helm.name == "helm"


def test_unfinished_build_counts_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPFLEET_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    _fake_build(tmp_path, with_marker=False)
    assert len(binaries.missing_binaries()) == len(binaries.KUBE_BINARIES)
    with pytest.raises(binaries.BinariesError, match="make kube-binaries"):
        binaries.locate(build_if_missing=False)


def test_kubebuilder_assets_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SIPFLEET_CACHE", str(cache))
    _fake_build(cache, with_marker=False)
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in binaries.KUBE_BINARIES:
        (assets / name).write_text("")
        (assets / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert binaries.locate(build_if_missing=False).kubectl == assets / "kubectl"


def test_missing_go_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPFLEET_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `go` here
    with pytest.raises(binaries.BinariesError, match="Go is not installed"):
        binaries.locate()
