"""Polling and kubectl helpers shared by the e2e tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sipfleet.devcluster.cluster import Cluster

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, step: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def get_json(kube: Cluster, *args: str) -> Any:
    """``kubectl get -o json``, decoded; a failing kubectl fails the test."""
    return json.loads(kube.kubectl("get", "-o", "json", *args).stdout)


def find_json(kube: Cluster, *args: str) -> Any:
    """Like `get_json`, but None when kubectl fails (e.g. the object is gone)."""
    result = kube.kubectl("get", "-o", "json", *args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None
