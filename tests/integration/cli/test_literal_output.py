"""Everything from data is shown literally, in every listing, on a terminal or not (issue 13).

Keys, chunk text, reasons and event details full of markup, emoji codes, ANSI escapes and
bidirectional controls go through ingest → docs → chunks → search → status on a running platform.
"""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docllm.cli.common import visible
from tests.integration.cli.conftest import Cli, words

AWKWARD_DOCS = {
    "x[/v2]/readme.md": "# Readme [/v2]\n\n## Notes\n\nclosing tags [/v2] everywhere markupword {w}\n",
    "[red]x.md": "# Red [red]title[/red]\n\n## Part\n\nredword [red]not red[/red] {w}\n",
    "passwd.md": "# Users :x:\n\n## Lines\n\nrootword root:x:0:0:root:/root:/bin/bash :smile: [bold]b[/bold] {w}\n",
    "esc\x1b[31mred\x1b[0m.md": "# Escapes\n\n## Part\n\nescword {w}\n",
    "rtl\u202egnp.md": "# Bidi \u202eevil\u202c\n\n## Part\n\nbidiword \u200f mark {w}\n",
}


def write_tree(root: Path, docs: dict[str, str]) -> None:
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(w=words(uuid.uuid4().hex[:8])), encoding="utf-8")


@pytest.fixture(scope="module")
def awkward(rt, tmp_path_factory) -> list[str]:
    """The awkward documents, ingested under the service `lit` (returns their keys)."""
    from docllm.cli.main import main

    root = tmp_path_factory.mktemp("awkward")
    write_tree(root, AWKWARD_DOCS)
    assert main(["--data-dir", str(rt.data_dir), "ingest", str(root), "--service", "lit", "--json"]) == 0
    return sorted(f"lit/{k}" for k in AWKWARD_DOCS)


@pytest.fixture(params=["pipe", "terminal"])
def mode(request, monkeypatch) -> str:
    if request.param == "terminal":
        monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's consoles render as on a terminal
    return str(request.param)


def no_raw_escapes(text: str) -> None:
    for ch in ("\x1b", "\x07", "\u202e", "\u200f", "\r"):
        assert ch not in text, repr(text)


def first_column(table: str) -> str:
    """The first column of a rich table, folded lines joined, without whitespace."""
    return "".join(row.split("│")[1] for row in table.splitlines() if row.startswith("│")).replace(" ", "")


def test_docs_lists_every_awkward_key_literally(cli: Cli, awkward, mode):
    r = cli("docs", "--prefix", "lit/")
    assert r.code == 0
    no_raw_escapes(r.shown)
    if mode == "pipe":
        assert [ln.split("\t")[0] for ln in r.out.splitlines()[1:]] == [visible(k) for k in awkward]
    else:
        shown = first_column(r.shown)
        assert all(visible(k).replace(" ", "") in shown for k in awkward), shown


@pytest.mark.parametrize(
    "argv", [["dedup-log"], ["events", "tail", "-n", "200"], ["status", "--events", "200"], ["jobs"]]
)
def test_listings_with_awkward_keys_neither_crash_nor_leak_escapes(cli: Cli, awkward, mode, argv):
    r = cli(*argv)
    assert r.code == 0, r.err
    no_raw_escapes(r.shown)
    if argv[0] == "events":
        assert all(visible(k) in r.shown for k in awkward)


def test_chunk_text_keeps_markup_and_emoji_codes(cli: Cli, awkward, mode):
    r = cli("chunks", "lit/passwd.md")
    assert r.code == 0
    assert "root:x:0:0:root" in r.shown and ":smile:" in r.shown and "[bold]b[/bold]" in r.shown
    assert "Users :x:" in r.shown
    r = cli("chunks", "lit/[red]x.md")
    assert "[red]not red[/red]" in r.shown and "Red [red]title[/red]" in r.shown
    r = cli("chunks", "lit/rtl\u202egnp.md")
    assert "\\u202eevil" in r.shown and "\\u200f" in r.shown
    no_raw_escapes(r.shown)


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("markupword", "lit/x[/v2]/readme.md"),
        ("redword", "lit/[red]x.md"),
        ("rootword", "lit/passwd.md"),
        ("escword", "lit/esc\x1b[31mred\x1b[0m.md"),
    ],
)
def test_search_hits_show_keys_and_text_literally(cli: Cli, awkward, mode, query, key):
    r = cli("search", query, "--service", "lit")
    assert r.code == 0, r.err
    assert f"1. {visible(key)} — " in r.shown
    no_raw_escapes(r.shown)
    if query == "rootword":
        assert "root:x:0:0:root" in r.shown and ":smile:" in r.shown


def insert_dead_letter(rt, queue: str, reason: str) -> str:
    """A dead letter with ``reason``, written as the queue does (no consumer can race for it)."""
    message_id = str(uuid.uuid4())
    now = int(time.time() * 1000)
    with rt.platform.local_queue._db.transaction() as conn:
        conn.execute(
            "INSERT INTO messages (id, queue, body, sent_ms, visible_at_ms, receive_count, state, reason, dead_ms) "
            "VALUES (?, ?, ?, ?, ?, 1, 'dead', ?, ?)",
            (message_id, queue, '{"detail-type": "Dataset Build Requested [x]"}', now, now, reason, now),
        )
    return message_id


def test_a_dead_letter_reason_is_shown_whole(rt, cli: Cli, mode):
    reason = "TrainingConfigError: unknown family 'nope' [request.family] :x: \x1b[2J"
    insert_dead_letter(rt, "DatasetQueue", reason)
    r = cli("status")
    assert r.code == 0
    assert visible(reason) in r.shown
    assert "(Dataset Build Requested [x])" in r.shown
    no_raw_escapes(r.shown)
    assert cli("dlq", "purge", "DatasetQueue", "--yes").code == 0


# -- the property: random Unicode in names and text ------------------------------------------------
FRAGMENTS = [
    "[", "]", "[/", "[red]", "[/red]", "[/v2]", "[bold]", "[link=x]", ":x:", ":smile:", "root:x:0", "\\", "\\[",
    "\x1b[31m", "\x1b]0;title\x07", "\x1b[2J", "\x07", "\x08", "\r", "\t", "\x7f", "\x9b", "\u200f", "\u200e",
    "\u202e", "\u2066", "\u2069", "\u200b", "\ufeff", "\u2028", "é", "文字", "نص", "עברית", "👩\u200d💻", " ", "-",
]  # fmt: skip
# Characters a file name cannot hold (and box drawing, which the terminal check splits tables on).
_NOT_IN_NAMES = "/\x00" + "".join(chr(c) for c in range(0x2500, 0x2580))
name_part = st.sampled_from(FRAGMENTS) | st.characters(exclude_categories=("Cs",), exclude_characters=_NOT_IN_NAMES)
text_part = st.sampled_from([*FRAGMENTS, "\n", "\n\n", "word"]) | st.characters(exclude_categories=("Cs",))
names = st.lists(name_part, min_size=1, max_size=6).map(lambda parts: "f" + "".join(parts) + ".md")
texts = st.lists(text_part, max_size=40).map("".join)
counter = itertools.count()


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=names, title=texts, body=texts)
def test_random_unicode_names_and_text_are_shown_exactly_as_stored(rt, cli: Cli, tmp_path_factory, name, title, body):
    n = next(counter)
    service, token = f"prop{n}", f"propword{n}x"
    folder = tmp_path_factory.mktemp("prop")
    (folder / name).write_text(
        f"# {title}\n\n## Section {n}\n\n{body} {token} {words(f'p{n}')}\n", encoding="utf-8", newline=""
    )
    key = f"{service}/{name}"

    r = cli("ingest", str(folder), "--service", service, "--json")
    assert r.code == 0, r.out
    summary = r.json()
    assert (summary["files"], summary["uploaded"], summary["pending"]) == (1, 1, [])

    (record,) = cli("docs", "--prefix", f"{service}/", "--json").json()
    assert record["doc_key"] == key  # stored exactly
    r = cli("docs", "--prefix", f"{service}/")
    assert r.code == 0 and r.out.splitlines()[1].split("\t")[0] == visible(key)

    stored = cli("chunks", key, "--json").json()
    assert stored["doc_key"] == key
    r = cli("chunks", key)
    assert r.code == 0
    no_raw_escapes(r.out)
    flat = " ".join(r.out.split())
    for chunk in stored["chunks"]:
        assert " ".join(visible(chunk["text"], multiline=True).split()) in flat
        assert visible(" > ".join(chunk["heading_path"])) in r.out

    if record["status"] == "processed":
        r = cli("search", token, "--service", service)
        assert r.code == 0, r.err
        assert f"1. {visible(key)} — " in r.out
        no_raw_escapes(r.out)

    for argv in (["status"], ["dedup-log", key], ["events", "tail", "-n", "5"]):
        r = cli(*argv)
        assert r.code == 0, (argv, r.err)
        no_raw_escapes(r.out)
