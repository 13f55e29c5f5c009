"""Data reaches the terminal literally: no markup, no emoji codes, no raw control characters (issue 13)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from docllm.cli.common import Col, line, lit, print_table, visible

SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own styling; anything else with ESC came from data

AWKWARD = [
    "notes[/v2]/readme.md",
    "[red]x.md",
    "[bold]a[/bold]",
    "root:x:0 :smile: :x:",
    "trailing backslash \\",
    "a\\[b] [/] [@click]x[/]",
    "[link=http://evil]click[/link]",
]


def console(*, terminal: bool, width: int = 200) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=width, emoji=False, highlight=False, soft_wrap=True), buf


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("terminal", [False, True])
def test_markup_and_emoji_codes_in_data_print_as_themselves(text, terminal):
    con, buf = console(terminal=terminal)
    con.print(line(("#1 ", "bold"), lit(text, "bold"), " ", lit(text)))
    assert SGR.sub("", buf.getvalue()) == f"#1 {text} {text}\n"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9bx", "c1\\x9bx"),
        ("rlo\u202eevil", "rlo\\u202eevil"),
        ("rlm\u200fisolate\u2066", "rlm\\u200fisolate\\u2066"),
        ("bom\ufeffzwsp\u200b", "bom\\ufeffzwsp\\u200b"),
        ("line\nbreak\ttab\rcr", "line\\nbreak\\ttab\\rcr"),
        ("sep\u2028", "sep\\u2028"),
        ("undecodable\udcff", "undecodable\\udcff"),
        ("emoji 👩\u200d💻 and ZWNJ \u200c stay", "emoji 👩\u200d💻 and ZWNJ \u200c stay"),
        ("accents é ü ß ñ, CJK 文字, Arabic نص, Hebrew עברית", "accents é ü ß ñ, CJK 文字, Arabic نص, Hebrew עברית"),
    ],
)
def test_control_format_and_bidi_characters_become_visible_escapes(raw, shown):
    assert visible(raw) == shown
    con, buf = console(terminal=True)
    con.print(lit(raw))
    assert SGR.sub("", buf.getvalue()) == shown + "\n"


def test_multiline_text_keeps_its_newlines_and_tabs_but_not_escapes():
    assert visible("a\nb\tc\x1b[2J", multiline=True) == "a\nb\tc\\x1b[2J"


def test_a_table_on_a_terminal_never_cuts_an_id_and_survives_markup_in_cells():
    version = "docllm-tiny-s3-20240101T000000Z-0123456789abcdef"
    con, buf = console(terminal=True, width=100)
    print_table(
        [Col("model", copy=True), "family", "dataset", "tokenizer", "val loss", "unigram", "tokens", "export"],
        [[version, "tiny-s3", "notes[/v2]/x", "tok-[red]1", "1.234", "5.678", "1000", "file:///a/very/long/path"]],
        console_=con,
    )
    text = SGR.sub("", buf.getvalue())
    assert version in text  # whole, on one line: copyable
    assert "…" not in text
    assert "notes[/v2]/x" in text and "tok-[red]1" in text  # markup in a cell: shown, no MarkupError


def test_a_narrow_terminal_folds_ids_instead_of_cutting_them():
    version = "ds-20240101T000000Z-0123456789abcdef0123456789"
    con, buf = console(terminal=True, width=40)
    print_table(
        [Col("version", copy=True), "created", "family", "services"],
        [[version, "2024-01-01", "x", "all"]],
        console_=con,
    )
    first_column = "".join(
        row.split("│")[1].strip() for row in SGR.sub("", buf.getvalue()).splitlines() if row.startswith("│")
    )
    assert version in first_column
    assert "…" not in buf.getvalue()


def test_a_table_that_is_not_on_a_terminal_is_tab_separated_and_whole():
    con, buf = console(terminal=False, width=20)
    print_table(
        ["document", "status"],
        [["s3/a very long key that would not fit [red]x.md", "processed"], ["tab\there", "dup\nlicate"]],
        console_=con,
    )
    assert buf.getvalue().splitlines() == [
        "document\tstatus",
        "s3/a very long key that would not fit [red]x.md\tprocessed",
        "tab\\there\tdup\\nlicate",
    ]


def test_the_fast_path_skips_only_characters_that_need_no_escape():
    from docllm.cli.common import _MAYBE_HIDDEN, _hidden

    assert not [hex(c) for c in range(0x110000) if _hidden(chr(c)) and not _MAYBE_HIDDEN.search(chr(c))]
