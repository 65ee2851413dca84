"""Review decisions in the ledger, on SQLite and on a live PostgreSQL server: one winner when reviewers race, rounds
when the command line decides again, and the migration that numbered the decisions already recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from voidflow.infra.database import engine_for, upgrade
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.exceptions import DecisionConflict, InvalidInput
from voidflow.void_ops.shots import MediaSource, Shot


def _delivered(ledger: Ledger, shot: str = "sh010") -> str:
    edit = ledger.record_edit(Path("/e.otio"), "0" * 64, 24.0, [])
    batch = ledger.create_batch(
        edit_id=edit,
        edit_path=Path("/e.otio"),
        edit_sha256="0" * 64,
        out_dir=Path("/o"),
        backend="cleanplate",
        params={},
    )
    source = MediaSource("/p.mov", "movie", 24.0)
    ledger.add_shots(batch, [Shot(shot, "V1", 0, shot, "clip", source, 24.0, 10, 5, (2, 2), 0, "ready")])
    label = ledger.allocate_version(batch, shot, {})
    ledger.finish_version(shot, label, status="delivered")
    return label


def test_reviewers_racing_on_one_version_leave_one_decision(any_db_url: str) -> None:
    label = _delivered(Ledger(any_db_url))
    outcomes: dict[str, str] = {}
    start = threading.Barrier(6)

    def decide(who: str) -> None:
        start.wait()
        try:
            Ledger(any_db_url).decide_version("sh010", label, decision="approved", reviewer=who, only_if_awaiting=True)
            outcomes[who] = "won"
        except DecisionConflict as error:
            outcomes[who] = str(error)

    threads = [threading.Thread(target=decide, args=(f"r{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [who for who, outcome in outcomes.items() if outcome == "won"]
    assert set(outcomes.values()) - {"won"} == {f"shot 'sh010' v001: already approved by {winner}"}
    (decisions,) = Ledger(any_db_url).version_reviews("sh010").values()
    assert [(d.round, d.reviewer) for d in decisions] == [(1, winner)]
    assert Ledger(any_db_url).versions_of(["sh010"])[0].review_state == "approved"


def test_the_command_line_decides_again_in_a_new_round(any_db_url: str) -> None:
    ledger = Ledger(any_db_url)
    label = _delivered(ledger)
    ledger.decide_version("sh010", label, decision="rejected", reviewer="anna", note="edge chatter")
    ledger.decide_version("sh010", label, decision="approved", reviewer="ben")
    decisions = ledger.version_reviews("sh010")[label]
    assert [(d.round, d.decision, d.reviewer, d.note) for d in decisions] == [
        (1, "rejected", "anna", "edge chatter"),
        (2, "approved", "ben", ""),
    ]
    assert ledger.versions_of(["sh010"])[0].review_state == "approved"
    with pytest.raises(InvalidInput, match="shot 'sh010' has no version v002"):
        ledger.decide_version("sh010", "v002", decision="approved", reviewer="anna")


def test_a_version_still_delivering_cannot_be_decided(any_db_url: str) -> None:
    ledger = Ledger(any_db_url)
    _delivered(ledger)
    (batch,) = ledger.batches()
    label = ledger.allocate_version(batch.id, "sh010", {})
    with pytest.raises(InvalidInput, match="v002 is delivering, not delivered"):
        ledger.decide_version("sh010", label, decision="approved", reviewer="anna")


def test_the_migration_numbers_the_mask_decisions_already_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    with engine_for(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO edits (id, path, sha256, rate, warnings, read_at) "
                "VALUES (1, '/e', 'x', 24, '[]', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO batches (id, created_at, state, kind, edit_id, edit_path, edit_sha256, out_dir, backend, "
                "params, host, code_version) VALUES ('b1', '2026-01-01', 'done', 'run', 1, '/e', 'x', '/o', 'c', '{}', "
                "'h', 'v')"
            )
        )
        for key, decision in (("k1", "rejected"), ("k2", "approved"), ("k1", "approved"), ("k1", "rejected")):
            connection.execute(
                text(
                    "INSERT INTO mask_reviews (mask_key, shot_name, batch_id, decision, reviewer, note, decided_at) "
                    "VALUES (:key, 'sh010', 'b1', :decision, 'anna', '', '2026-01-01')"
                ),
                {"key": key, "decision": decision},
            )
    upgrade(url)
    ledger = Ledger(url)
    rounds = {
        key: [(r.round, r.decision) for r in reviews] for key, reviews in ledger.mask_reviews(["k1", "k2"]).items()
    }
    assert rounds == {"k1": [(1, "rejected"), (2, "approved"), (3, "rejected")], "k2": [(1, "approved")]}
    newest = ledger.review("k1")
    assert newest is not None and newest.decision == "rejected"
