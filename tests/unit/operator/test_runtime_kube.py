"""Credentials: kopf's login and the operator's client read the same kubeconfig."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
import yaml
from sipfleet.operator.kube import (
    KOPF_CONNECTIONS,
    KUBE_THREADS,
    api_client,
    configuration,
    connection_info,
    kopf_session,
    watch_streams,
)


def write_kubeconfig(path: Path, user: dict[str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_token_kubeconfig_becomes_bearer_credentials(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"token": "abc.def"})
    info = connection_info(str(path))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token) == ("Bearer", "abc.def")
    assert configuration(str(path)).host == info.server


def test_kubeconfig_env_is_read_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"token": "t"})
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert connection_info(None).token == "t"


def test_missing_kubeconfig_is_a_login_error(tmp_path: Path) -> None:
    with pytest.raises(kopf.LoginError, match="no usable kubeconfig"):
        connection_info(str(tmp_path / "absent"))


async def test_kopf_session_has_a_bounded_pool_and_the_same_credentials(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"token": "abc.def"})
    ctx = kopf_session(str(path), streams=watch_streams(10))
    try:
        assert ctx.server == "https://127.0.0.1:6443"
        assert ctx.aiohttp_session.connector is not None
        # ten namespaces x two resources + two observers, and room for requests
        assert ctx.aiohttp_session.connector.limit == 32 + KOPF_CONNECTIONS
        assert ctx.aiohttp_session.headers["Authorization"] == "Bearer abc.def"
    finally:
        await ctx.aiohttp_session.close()


def test_client_pool_matches_its_threads(tmp_path: Path) -> None:
    client = api_client(str(write_kubeconfig(tmp_path / "kc", {"token": "t"})))
    assert client.configuration.connection_pool_maxsize == KUBE_THREADS
