"""Fixtures of the service tests."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.service.units import OUTSIDE_LINK, VENV_BIN


@pytest.fixture
def home_env(isolated_env, tmp_path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**isolated_env, "HOME": str(home), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


@pytest.fixture(autouse=True)
def remove_outside_tmp(tmp_path):
    yield
    link = tmp_path / OUTSIDE_LINK
    if link.is_symlink():
        shutil.rmtree(os.readlink(link), ignore_errors=True)
