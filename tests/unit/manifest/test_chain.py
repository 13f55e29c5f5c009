"""The per-family hash chain: every removed, moved or relinked entry is named."""

from __future__ import annotations

import hashlib

import pytest

from docllm.manifest.chain import (
    ChainLink,
    RecordedEntry,
    StoredEntry,
    check_chain,
    family_prefix,
    manifest_key,
    sequence_of,
)

F = "tiny-s3"


def digest(n: int) -> str:
    return hashlib.sha256(f"entry {n}".encode()).hexdigest()


def chain(n: int) -> tuple[list[StoredEntry], list[RecordedEntry]]:
    stored = [
        StoredEntry(
            key=manifest_key(F, i),
            sha256=digest(i),
            link=ChainLink(family=F, sequence=i, previous_sha256=digest(i - 1) if i > 1 else None),
        )
        for i in range(1, n + 1)
    ]
    recorded = [RecordedEntry(sequence=i, key=manifest_key(F, i), sha256=digest(i)) for i in range(1, n + 1)]
    return stored, recorded


def test_keys_are_numbered_and_parse_back() -> None:
    assert manifest_key(F, 7) == "manifests/tiny-s3/00000007.json"
    assert sequence_of(manifest_key(F, 7)) == 7
    assert sequence_of("manifests/tiny-s3/00000007-x.json") is None
    assert family_prefix(F) == "manifests/tiny-s3/"


@pytest.mark.parametrize("bad", ["", "../x", "A", "a/b"])
def test_family_names_that_could_escape_the_prefix_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        family_prefix(bad)


def test_sequence_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        manifest_key(F, 0)


def test_an_intact_chain_has_no_mismatch() -> None:
    assert check_chain(F, *chain(4)) == []


def test_a_removed_middle_entry_is_a_named_gap() -> None:
    stored, recorded = chain(4)
    del stored[1]
    problems = check_chain(F, stored, recorded)
    assert [(m.kind, m.subject) for m in problems] == [("chain", manifest_key(F, 2))]


def test_a_removed_last_entry_is_named_from_the_state_record() -> None:
    stored, recorded = chain(3)
    del stored[2]
    assert [(m.kind, m.subject) for m in check_chain(F, stored, recorded)] == [("chain", manifest_key(F, 3))]


def test_swapped_entries_declare_other_positions_and_break_their_links() -> None:
    stored, recorded = chain(3)
    a, b = stored[0], stored[1]
    stored[0] = StoredEntry(key=a.key, sha256=b.sha256, link=b.link)
    stored[1] = StoredEntry(key=b.key, sha256=a.sha256, link=a.link)
    problems = check_chain(F, stored, recorded)
    chain_subjects = {m.subject for m in problems if m.kind == "chain"}
    assert chain_subjects == {manifest_key(F, 1), manifest_key(F, 2), manifest_key(F, 3)}
    assert {m.subject for m in problems if m.kind == "state"} == {manifest_key(F, 1), manifest_key(F, 2)}


def test_a_wrong_previous_digest_is_named() -> None:
    stored, recorded = chain(2)
    stored[1] = StoredEntry(
        key=stored[1].key, sha256=digest(2), link=ChainLink(family=F, sequence=2, previous_sha256="0" * 64)
    )
    [problem] = check_chain(F, stored, recorded)
    assert (problem.kind, problem.expected, problem.actual) == ("chain", digest(1), "0" * 64)


def test_the_first_entry_names_no_previous() -> None:
    stored, recorded = chain(1)
    stored[0] = StoredEntry(
        key=stored[0].key, sha256=digest(1), link=ChainLink(family=F, sequence=1, previous_sha256="1" * 64)
    )
    assert [m.kind for m in check_chain(F, stored, recorded)] == ["chain"]


def test_an_unrecorded_entry_and_an_unreadable_one_are_named() -> None:
    stored, recorded = chain(3)
    stored[1] = StoredEntry(key=stored[1].key, sha256=digest(2), link=None)
    problems = check_chain(F, stored, recorded[:2])
    assert {(m.kind, m.subject) for m in problems} == {
        ("chain", manifest_key(F, 2)),
        ("state", manifest_key(F, 3)),
    }


def test_a_foreign_key_under_the_prefix_is_named() -> None:
    stored, recorded = chain(1)
    stored.append(StoredEntry(key="manifests/tiny-s3/notes.txt", sha256=digest(9), link=None))
    assert [(m.kind, m.subject) for m in check_chain(F, stored, recorded)] == [("chain", "manifests/tiny-s3/notes.txt")]
