"""A crash between any two side effects loses nothing: the ingest and index stages, driven through
their real handlers, are killed after the 1st, 2nd, … Nth side effect of a fault-free run, then
recovered as ``docllm up`` recovers; each run must end exactly where the fault-free run ends.

The kill is in-process (the fault injector's kill stand-in raises a ``BaseException``, which no
handler catches, and SQLite rolls back the open transaction as a dead process's would), so every
kill point costs milliseconds, not a process start. ``test_crash_recovery.py`` and
``test_faults_runtime.py`` kill real processes with SIGKILL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform, reset_platforms
from docllm.faults import FaultInjector, parse_faults
from docllm.lambda_support import LAST_FAILURES
from docllm.records import DOCS_PK
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.outbox import pending
from tests.support.kill_points import kill_at_every_point, runtime

STAGES = ("IngestQueue", "IndexQueue")


def doc(topic: str) -> bytes:
    words = " ".join(f"{topic}w{i}" for i in range(60))
    return f"# {topic}\n\n## Section\n\nAbout {topic}: {words}\n".encode()


SHARED = "To use this example, replace every placeholder value with one of your own before you run it."


def with_shared(n: int, *, shared: bool = True) -> bytes:
    words = " ".join(f"page{n}w{i}" for i in range(60))
    return f"# Page {n}\n\n## Steps\n\n{SHARED if shared else ''}\n\nPage {n}: {words}\n".encode()


def drain(rt: LocalRuntime) -> None:
    """Deliver every visible message of the ingest and index queues to its handler, one batch at a
    time, in this thread, as the runtime's workers would."""
    assert rt.platform is not None
    q = rt.platform.local_queue
    sources = [(fn, src) for fn in rt.wiring.functions.values() for src in fn.sqs_sources if src.queue in STAGES]
    while True:
        moved = 0
        for fn, src in sources:
            messages = q.receive(src.queue, max_messages=src.batch_size)
            if messages:
                rt._invoke(fn, src, rt.handlers[fn.name], messages, LAST_FAILURES)
                moved += len(messages)
        if not moved:
            return


def snapshot(p: Platform) -> dict[str, Any]:
    """What a user can observe: each document's state, what the index holds, what is left over."""
    search = p.search
    return {
        "records": {
            k: (i["status"], i.get("duplicate_of"), i["chunk_count"], i["version_id"])
            for k, i in p.state.query(DOCS_PK)
        },
        "index": {k: (v, search.chunk_ids(k)) for k, v in sorted(search.document_versions().items())},  # type: ignore[attr-defined]
        "outbox": len(pending(p)),
        "dead": {q: len(p.local_queue.dead_letters(q)) for q in STAGES},
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    """A platform where a.md and b.md hold the same text (b a duplicate), c.md and z.md their own, and
    p1..p5 share a paragraph (boilerplate at five documents); then queued: a.md deleted (b is
    promoted), c.md emptied (quarantined), d.md with c's old text, y.md with z's text (y sorts first:
    z is superseded), p5 overwritten without the paragraph (p1..p4 get it back)."""
    base = tmp_path_factory.mktemp("kill-points") / "base"
    rt = runtime(base)
    p = rt.platform
    assert p is not None
    raw = p.settings.raw_bucket
    before = [("s/a.md", doc("alpha")), ("s/b.md", doc("alpha")), ("s/c.md", doc("gamma")), ("s/z.md", doc("zeta"))]
    for key, body in before + [(f"s/p{n}.md", with_shared(n)) for n in range(1, 6)]:
        p.objects.put(raw, key, body)
    drain(rt)
    p.objects.delete(raw, "s/a.md")
    p.objects.put(raw, "s/c.md", b"")
    p.objects.put(raw, "s/d.md", doc("gamma"))
    p.objects.put(raw, "s/y.md", doc("zeta"))
    p.objects.put(raw, "s/p5.md", with_shared(5, shared=False))
    reset_platforms()
    # The fault-free run, counting its side effects.
    reference_dir = base.parent / "reference"
    shutil.copytree(base, reference_dir)
    counter = FaultInjector(parse_faults("", trace=str(base.parent / "trace.tsv")))  # a trace counts, faults nothing
    rt = runtime(reference_dir, counter)
    drain(rt)
    assert rt.platform is not None
    p_ref = rt.platform
    expected = snapshot(p_ref)
    assert expected["index"].keys() == {"s/b.md", "s/d.md", "s/y.md"} | {f"s/p{n}.md" for n in range(1, 6)}
    assert expected["records"]["s/c.md"][0] == "quarantined"
    assert expected["records"]["s/z.md"][:2] == ("duplicate", "s/y.md")
    # p1..p4 hold the paragraph again (four documents: not boilerplate any more).
    assert SHARED in p_ref.objects.get(p_ref.settings.processed_bucket, "chunks/s/p1.md.jsonl").decode()
    reset_platforms()
    return base, expected, counter.side_effects


def test_the_scenario_has_enough_side_effects_to_be_worth_enumerating(scenario) -> None:
    _, _, total = scenario
    assert total >= 15


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_kill_at_any_side_effect_then_recovery_ends_as_the_fault_free_run(scenario, tmp_path, when) -> None:
    base, expected, total = scenario
    kill_at_every_point(base, tmp_path, total, when, drain, snapshot, expected)
