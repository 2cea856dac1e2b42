"""The run layout every command shares: the data directory, run ids and the latest pointer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs
import pytest

from swarm_actors._runs import (
    DATA_DIR_ENV,
    latest_run,
    list_runs,
    new_run,
    new_run_id,
    resolve_data_dir,
    run_dir,
)
from swarm_actors.errors import InvalidArgumentError, RunNotFoundError


def test_the_data_dir_is_the_argument_then_the_environment_then_the_user_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == platformdirs.user_data_path("swarm-actors", appauthor=False)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel") == tmp_path / "rel"  # absolute: it outlives a chdir
    assert not (tmp_path / "arg").exists()  # resolving creates nothing


def test_run_ids_sort_by_time() -> None:
    early, late = new_run_id(now=1_000_000_000), new_run_id(now=1_000_000_001)
    assert re.fullmatch(r"20010909T014640Z-[0-9a-f]{6}", early)
    assert early < late
    assert new_run_id() != new_run_id()


def test_new_run_makes_the_directory_and_moves_latest(tmp_path: Path) -> None:
    assert latest_run(tmp_path) is None
    assert list_runs(tmp_path) == []
    first = new_run(tmp_path, "20260101T000000Z-aaaaaa")
    assert first.root == tmp_path / "runs" / first.run_id
    assert first.root.is_dir()
    assert (first.workspace, first.blobs, first.journal) == (
        first.root / "workspace",
        first.root / "blobs",
        first.root / "journal",
    )
    assert first.summary.name == "summary.json"
    assert latest_run(tmp_path) == first.run_id
    second = new_run(tmp_path)
    assert latest_run(tmp_path) == second.run_id
    assert list_runs(tmp_path) == [first.run_id, second.run_id]
    assert run_dir(None, tmp_path) == second
    assert run_dir("latest", tmp_path) == second


def test_latest_may_be_a_file_holding_the_id(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    pointer = tmp_path / "runs" / "latest"
    pointer.unlink()
    pointer.write_text(run.run_id + "\n")
    assert latest_run(tmp_path) == run.run_id
    pointer.write_text("gone\n")  # a pointer at nothing is no run
    assert latest_run(tmp_path) is None


def test_a_run_is_found_by_id_prefix_or_path(tmp_path: Path) -> None:
    a = new_run(tmp_path, "20260101T000000Z-aaaaaa")
    b = new_run(tmp_path, "20260101T000000Z-abbbbb")
    c = new_run(tmp_path, "20260202T000000Z-cccccc")
    assert run_dir(a.run_id, tmp_path) == a
    assert run_dir("20260202", tmp_path) == c
    assert run_dir("20260101T000000Z-ab", tmp_path) == b
    assert run_dir(str(a.root), tmp_path).root == a.root
    with pytest.raises(RunNotFoundError, match="matches 2 runs") as ambiguous:
        run_dir("20260101", tmp_path)
    assert ambiguous.value.run == "20260101"
    assert ambiguous.value.data_dir == str(tmp_path)
    with pytest.raises(RunNotFoundError, match=r"no run 'nope'.*check --data-dir"):
        run_dir("nope", tmp_path)
    with pytest.raises(RunNotFoundError, match="no run directory"):
        run_dir(str(tmp_path / "elsewhere"), tmp_path)


def test_no_run_yet_names_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="swarm-actors demo") as info:
        run_dir(None, tmp_path)
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize("bad", ["latest", "../up", "", "a b", "x" * 129])
def test_bad_run_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="run id"):
        new_run(tmp_path, bad or "/")
    assert not (tmp_path / "up").exists()


def test_a_taken_run_id_is_refused(tmp_path: Path) -> None:
    new_run(tmp_path, "same")
    with pytest.raises(InvalidArgumentError, match="exists already"):
        new_run(tmp_path, "same")


def test_latest_is_replaced_atomically(tmp_path: Path) -> None:
    # No temporary pointer is left behind, and latest is always a whole pointer.
    made = [new_run(tmp_path).run_id for _ in range(5)]
    names = os.listdir(tmp_path / "runs")
    assert not [n for n in names if n.startswith(".latest")]
    assert latest_run(tmp_path) == made[-1]
    assert sorted(made) == list_runs(tmp_path)
