"""Verbs against a running platform: links out of an ingested folder, duplicates, queues, evaluation (issue 13)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from docllm.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE
from tests.integration.cli.conftest import Cli, words


def test_ingest_skips_links_out_of_the_folder_and_reports_them(cli: Cli, tmp_path: Path):
    secret = tmp_path / "api-key"
    secret.write_text(f"# Key\n\n## Secret\n\nsecretword {words('secret')}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(f"# Guide\n\n## Part\n\nlinkguideword {words('lg')}\n")
    (docs / "key.md").symlink_to(secret)
    (docs / "passwd.md").symlink_to("/etc/passwd")

    r = cli("ingest", str(docs), "--service", "links", "--json")
    assert r.code == 0, r.err
    summary = r.json()
    assert summary["uploaded"] == 1
    assert sorted(Path(s["path"]).name for s in summary["skipped"]) == ["key.md", "passwd.md"]
    assert all("leaves the folder" in s["reason"] for s in summary["skipped"])
    assert [d["doc_key"] for d in cli("docs", "--prefix", "links/", "--json").json()] == ["links/guide.md"]
    assert cli("search", "secretword", "--json").json()["hits"] == []

    r = cli("ingest", str(docs), "--service", "links")  # the human summary names them too
    assert "2 skipped" in r.out and "key.md" in r.out and "--follow-links" in r.out

    r = cli("ingest", str(docs), "--service", "links", "--follow-links", "--json")
    assert r.code == 0 and r.json()["skipped"] == []
    assert [h["doc_key"] for h in cli("search", "secretword", "--json").json()["hits"]][:1] == ["links/key.md"]


def test_chunks_of_a_duplicate_says_what_it_duplicates(cli: Cli, tmp_path: Path):
    text = f"# Copy\n\n## Part\n\ncopyword {words(uuid.uuid4().hex[:6])}\n"
    for name in ("b-copy.md", "a-page.md"):  # exact duplicates within a service: the smallest key is canonical
        (tmp_path / name).write_text(text)
        assert cli("ingest", str(tmp_path / name), "--service", "dup", "--json").code == 0
    records = {d["doc_key"]: d for d in cli("docs", "--prefix", "dup/", "--json").json()}
    (dup,) = [d for d in records.values() if d["status"] == "duplicate"]
    canonical = dup["duplicate_of"]
    assert (dup["doc_key"], canonical, records[canonical]["status"]) == ("dup/b-copy.md", "dup/a-page.md", "processed")

    r = cli("chunks", dup["doc_key"])
    assert r.code == 0
    assert f"{dup['doc_key']} is a duplicate of {canonical}" in r.out and f"docllm chunks {canonical}" in r.out
    body = cli("chunks", dup["doc_key"], "--json").json()
    assert (body["status"], body["duplicate_of"], body["chunks"]) == ("duplicate", canonical, [])
    assert cli("chunks", canonical, "--json").json()["chunks"]

    r = cli("chunks", "dup/no-such-page.md")
    assert r.code == EXIT_NOT_FOUND and "no document" in r.err


def test_dlq_redrive_and_purge_name_the_known_queues_and_purge_asks_first(rt, cli: Cli):
    r = cli("dlq", "redrive", "Bogus")
    assert r.code == EXIT_NOT_FOUND
    assert "no queue named 'Bogus'" in r.err and "IngestQueue" in r.err

    q = rt.platform.local_queue
    now = int(time.time() * 1000)
    with q._db.transaction() as conn:  # a dead letter no consumer can race for
        conn.execute(
            "INSERT INTO messages (id, queue, body, sent_ms, visible_at_ms, receive_count, state, reason, dead_ms) "
            "VALUES (?, 'TrainQueue', '{}', ?, ?, 3, 'dead', 'boom', ?)",
            (str(uuid.uuid4()), now, now, now),
        )
    assert q.stats("TrainQueue").dead == 1
    r = cli("dlq", "purge", "TrainQueue")  # stdin is no terminal: no prompt, no deletion
    assert r.code == EXIT_USAGE and "--yes" in r.err
    assert q.stats("TrainQueue").dead == 1
    r = cli("dlq", "purge", "TrainQueue", "--yes", "--json")
    assert (r.code, r.json()) == (0, {"queue": "TrainQueue", "purged": 1})
    assert q.stats("TrainQueue").dead == 0


def test_eval_retrieval_warns_when_most_questions_are_about_services_not_ingested(cli: Cli, tmp_path: Path):
    guide = tmp_path / "evalsvc"
    guide.mkdir()
    (guide / "a.md").write_text(f"# Alpha\n\n## Part\n\nevalalphaword {words('ea')}\n")
    assert cli("ingest", str(guide), "--service", "evalsvc", "--json").code == 0
    devset = tmp_path / "devset.jsonl"
    rows = [{"question": "evalalphaword", "expected_doc_keys": ["evalsvc/a.md"]}] + [
        {"question": f"question {i}", "expected_doc_keys": [f"elsewhere{i % 2}/page{i}.md"]} for i in range(3)
    ]
    devset.write_text("".join(json.dumps(r) + "\n" for r in rows))

    r = cli("eval", "retrieval", str(devset))
    assert r.code == 0
    assert "warning: 3 of 4 questions expect documents of services not ingested (elsewhere0, elsewhere1)" in r.err
    assert "--services-only" in r.err

    r = cli("eval", "retrieval", str(devset), "--services-only", "--json")
    assert r.code == 0
    report = r.json()
    assert (report["questions"], report["excluded_questions"], report["recall_at_1"]) == (1, 3, 1.0)

    only_elsewhere = tmp_path / "elsewhere.jsonl"
    only_elsewhere.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    r = cli("eval", "retrieval", str(only_elsewhere), "--services-only", "--json")
    assert r.code == EXIT_FAILED and "no question" in r.json()["error"]


def test_a_malformed_question_file_is_a_usage_error(cli: Cli, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": ""}\n')
    r = cli("eval", "retrieval", str(bad))
    assert r.code == EXIT_USAGE and "line 1" in r.err
    assert cli("eval", "retrieval", str(tmp_path)).code == EXIT_USAGE  # a folder


def test_the_ingest_summary_names_every_document_superseded_in_this_upload_or_earlier(cli: Cli, tmp_path: Path):
    body = f"# Copy\n\n## Same\n\nsupersedeword {words('sup')}\n"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "b.md").write_text(body)
    (second / "a.md").write_text(body)  # sorts first: becomes canonical, b.md is superseded
    (second / "c.md").write_text(body)  # a duplicate within the upload
    assert cli("ingest", str(first), "--service", "sup", "--json").json()["superseded"] == []
    summary = cli("ingest", str(second), "--service", "sup", "--json").json()
    assert sorted((d["doc_key"], d["duplicate_of"]) for d in summary["superseded"]) == [
        ("sup/b.md", "sup/a.md"),
        ("sup/c.md", "sup/a.md"),
    ]
    shown = cli("ingest", str(second), "--service", "sup").out  # nothing new: nothing named
    assert "duplicate sup/" not in shown
