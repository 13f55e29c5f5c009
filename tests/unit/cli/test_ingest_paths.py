"""What `docllm ingest` reads: nothing outside the folder unless asked, only regular files (issue 13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docllm.cli.common import EXIT_NOT_FOUND, EXIT_USAGE, CliError
from docllm.cli.docs_cmds import collect_files


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ with a file, a subfolder, links in and out, a pipe; a secret and a folder outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "api-key").write_text("secret")
    (outside / "more").mkdir()
    (outside / "more" / "x.md").write_text("# more")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# a")
    (docs / "sub" / "b.md").write_text("# b")
    (docs / ".hidden.md").write_text("# hidden")
    (docs / "passwd.md").symlink_to("/etc/passwd")
    (docs / "key.md").symlink_to(outside / "api-key")
    (docs / "alias.md").symlink_to(docs / "a.md")  # stays inside: fine
    (docs / "relative.md").symlink_to("sub/b.md")
    (docs / "away").symlink_to(outside / "more", target_is_directory=True)
    (docs / "dangling.md").symlink_to(tmp_path / "gone")
    os.mkfifo(docs / "pipe.md")
    return docs, outside


def names(found: list[tuple[Path, Path]]) -> list[str]:
    return sorted(f.relative_to(base).as_posix() for f, base in found)


def test_links_that_leave_the_folder_are_skipped_and_reported(tree):
    docs, outside = tree
    found, skipped = collect_files([str(docs)])
    assert names(found) == ["a.md", "alias.md", "relative.md", "sub/b.md"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert "leaves the folder" in reasons["passwd.md"] and "/etc/passwd" in reasons["passwd.md"]
    assert "leaves the folder" in reasons["key.md"] and str(outside / "api-key") in reasons["key.md"]
    assert "leaves the folder" in reasons["away"]
    assert "named pipe" in reasons["pipe.md"]  # reading it would block forever
    assert "dangling.md" in reasons


def test_follow_links_reads_them(tree):
    docs, _ = tree
    found, skipped = collect_files([str(docs)], follow_links=True)
    assert names(found) == ["a.md", "alias.md", "away/x.md", "key.md", "passwd.md", "relative.md", "sub/b.md"]
    assert {Path(s.path).name for s in skipped} == {"pipe.md", "dangling.md"}


def test_a_link_loop_under_follow_links_ends(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.md").write_text("# a")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    found, _ = collect_files([str(tmp_path / "d")], follow_links=True)
    assert names(found) == ["a.md"]


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/dev/null", EXIT_USAGE, "/dev/null is a character device"),
        ("/no/such/thing", EXIT_NOT_FOUND, "no such file or folder: /no/such/thing"),
    ],
)
def test_a_named_path_that_is_no_file_or_folder_says_what_it_is(path, code, says):
    with pytest.raises(CliError) as exc:
        collect_files([path])
    assert exc.value.code == code and says in str(exc.value)


def test_a_named_pipe_given_by_name_is_refused(tmp_path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(CliError, match="is a named pipe"):
        collect_files([str(tmp_path / "p")])


def test_a_file_name_that_is_not_utf8_is_skipped(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "ok.md").write_text("# ok")
    bad = os.path.join(os.fsencode(d), b"bad\xff.md")
    with open(bad, "wb") as f:
        f.write(b"# bad")
    found, skipped = collect_files([str(d)])
    assert names(found) == ["ok.md"]
    assert [s.reason for s in skipped] == ["the file name is not valid UTF-8"]


def test_two_files_landing_on_one_key_are_refused_and_an_over_long_key_is_skipped(tmp_path):
    from docllm.cli.common import CliError
    from docllm.cli.docs_cmds import MAX_KEY_BYTES, _checked_keys

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.md").write_text(d)
    files = [(tmp_path / "a" / "x.md", tmp_path / "a"), (tmp_path / "b" / "x.md", tmp_path / "b")]
    with pytest.raises(CliError, match=r"would both be stored as coll/x\.md") as caught:
        _checked_keys(files, "coll", [])
    assert caught.value.code == 2
    long_name = "n" * (MAX_KEY_BYTES + 1) + ".md"
    skipped: list = []
    kept = _checked_keys([(tmp_path / long_name, tmp_path), files[0]], "coll", skipped)
    assert kept == [files[0]] and "1024-byte limit" in skipped[0].reason
