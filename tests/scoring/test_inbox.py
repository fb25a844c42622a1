"""The inbox protocol: readiness, atomic claims, stranded claims, archive names."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import Engine

from lung_model.pipelines.batch_score import claim_ready
from lung_model.scoring import inbox
from lung_model.scoring.inbox import claim, find_ready_studies
from lung_model.settings import Settings


def _study(settings: Settings, name: str, ready: bool = True) -> Path:
    folder = settings.inbox / name
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.jpg").write_bytes(b"x")
    if ready:
        (folder / settings.ready_marker).touch()
    return folder


def test_only_folders_with_the_marker_are_ready(settings: Settings) -> None:
    _study(settings, "A")
    _study(settings, "B", ready=False)
    (settings.inbox / "stray.jpg").write_bytes(b"x")
    (settings.inbox / "C").mkdir()
    (settings.inbox / "C" / "sub").mkdir()
    (settings.inbox / "C" / "sub" / settings.ready_marker).touch()  # marker not at the top

    assert [p.name for p in find_ready_studies(settings)] == ["A"]


def test_a_marker_that_is_a_folder_or_a_link_is_no_marker(settings: Settings) -> None:
    """Only a regular file marks a study ready: a `_READY` folder (even one holding files) or
    link (even to a file in the study) is not one, and the Operations page says why."""
    marker = settings.ready_marker
    folder = _study(settings, "F", ready=False)
    (folder / marker).mkdir()
    (folder / marker / "a.jpg").write_bytes(b"x")
    elsewhere = settings.home / "elsewhere"
    elsewhere.touch()
    (_study(settings, "L", ready=False) / marker).symlink_to(elsewhere)
    inside = _study(settings, "I", ready=False)
    (inside / marker).symlink_to(inside / "sub" / "a.jpg")
    ready = _study(settings, "R")

    assert [p.name for p in find_ready_studies(settings)] == ["R"]
    assert inbox.any_ready(settings.inbox, marker)  # what the DAG's sensor waits for
    (ready / marker).unlink()
    assert not inbox.any_ready(settings.inbox, marker)
    assert {w.name: w.why for w in inbox.waiting_folders(settings)} == {
        "F": f"{marker} is a folder, not a file",
        "I": f"{marker} is a symbolic link: not followed",
        "L": f"{marker} is a symbolic link: not followed",
        "R": f"no {marker} marker",
    }


def test_quiet_period_waits_until_nothing_changed(settings: Settings) -> None:
    settings.ready_quiet_seconds = 30
    folder = _study(settings, "Q")
    now = time.time()
    old = now - 60
    for path in [folder, folder / "sub", folder / "sub" / "a.jpg", folder / settings.ready_marker]:
        os.utime(path, (old, old), follow_symlinks=False)

    assert find_ready_studies(settings, now=now) == [folder]
    os.utime(folder / "sub" / "a.jpg", (now - 5, now - 5))  # a slice still being written
    assert find_ready_studies(settings, now=now) == []


def test_two_claims_of_one_folder_one_wins(settings: Settings) -> None:
    folders = [_study(settings, f"R{i}") for i in range(20)]
    results: list[list[Path | None]] = [[], []]

    def claimer(slot: int) -> None:
        results[slot] = [claim(folder, settings) for folder in folders]

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    won = [a or b for a, b in zip(*results, strict=True)]
    assert all(p and p.name == p.name.split("~")[0] for p in won)  # a claim keeps its name
    assert all((a is None) != (b is None) for a, b in zip(*results, strict=True))
    assert sorted(inbox.study_name(p) for p in won if p) == sorted(f.name for f in folders)
    assert len(list(settings.processing.iterdir())) == 20 and not list(settings.inbox.iterdir())


def test_claim_ready_resumes_stranded_claims_but_not_locked_ones(
    settings: Settings, engine: Engine
) -> None:
    stranded = claim(_study(settings, "S1"), settings)
    busy = claim(_study(settings, "S2"), settings)
    _study(settings, "S3")
    assert stranded and busy

    with inbox.study_lock(engine, inbox.claim_id(busy)) as held:
        assert held
        claimed = claim_ready(settings, engine)
        with inbox.study_lock(engine, inbox.claim_id(busy)) as second:
            assert not second  # another session holds it

    names = sorted(inbox.study_name(p) for p in claimed)
    assert names == ["S1", "S3"] and all(p.parent.parent == settings.processing for p in claimed)


def test_archive_never_overwrites_an_earlier_study_of_the_same_name(settings: Settings) -> None:
    first = inbox.archive(claim(_study(settings, "Same"), settings) or Path(), settings)
    second = inbox.archive(claim(_study(settings, "Same"), settings) or Path(), settings)

    assert first == settings.archive / "Same"
    assert second.name.startswith("Same~") and (second / "sub" / "a.jpg").exists()
    assert (first / "sub" / "a.jpg").exists()


def test_empty_claim_folders_left_by_a_kill_are_cleaned_up_after_a_grace(
    settings: Settings,
) -> None:
    left = settings.processing / "20260101T000000-abcdef"  # killed between mkdir and rename
    left.mkdir(parents=True)
    fresh = settings.processing / "20260101T000001-abcdef"  # someone claiming right now
    fresh.mkdir()
    old = time.time() - 600
    os.utime(left, (old, old))

    assert find_ready_studies(settings) == []
    assert not left.exists() and fresh.exists()
