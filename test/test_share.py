# SPDX-License-Identifier: Apache-2.0
"""Finding the package's data files from any working directory."""

from pathlib import Path

from dynvit_ros.share import data_dirs, resolve_path


def test_package_relative_paths_resolve_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = resolve_path("config/dynvit.yaml")
    assert found.is_absolute() and found.is_file()
    assert any((folder / "ComputeBudget.msg").is_file() for folder in data_dirs("msg"))
    assert any((folder / "gv100.yaml").is_file() for folder in data_dirs("config/accelerators"))


def test_working_directory_wins_and_unknown_paths_come_back_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dynvit.yaml").write_text("{}")
    assert resolve_path("config/dynvit.yaml") == Path("config/dynvit.yaml")
    assert resolve_path("no/such/file.yaml") == Path("no/such/file.yaml")
    assert resolve_path("~/x.yaml") == Path.home() / "x.yaml"
