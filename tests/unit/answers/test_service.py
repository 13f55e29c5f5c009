"""The answer path: answer with citations, or abstain; engine errors propagate as errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.answers.exceptions import ModelMismatchError
from docllm.answers.models import NOT_COVERED
from docllm.answers.prompt import STOP
from docllm.answers.service import answer_question, clean_answer, stream_answer
from docllm.search.exceptions import UnknownServiceError
from docllm.serving.exceptions import EngineBusyError, NoModelDeployedError, PromptTooLongError
from tests.unit.answers.fakes import LEAD, FakeEngine, lead_below_details_index, small_index

QUESTION = "How do I enable versioning on a bucket?"
GOOD = "Open the Amazon S3 console, choose the bucket, choose Properties, and under Bucket Versioning choose Edit."


def test_an_answerable_question_is_answered_with_a_citation_of_the_right_page(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD)
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=engine)
    assert not answer.abstained and answer.reason is None and answer.grounded
    assert answer.answer == GOOD
    assert [c.doc_key for c in answer.citations] == ["s3/Versioning.md"]
    assert answer.citations[0].version_id == "v-s3/Versioning.md"
    assert "Bucket Versioning choose Edit" in answer.citations[0].quote
    assert answer.model_version == "tiny-s3-v1" and answer.latency_ms >= 0
    assert answer.retrieval[0].doc_key == "s3/Versioning.md"
    assert QUESTION in engine.prompts[0]


def test_a_made_up_number_makes_the_answer_abstain(tmp_path: Path) -> None:
    engine = FakeEngine("Versioning keeps multiple variants of an object for 90 days.")
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=engine)
    assert answer.abstained and answer.reason == "unsupported_claims"
    assert answer.answer == NOT_COVERED and answer.citations == []
    assert not answer.grounded and answer.unsupported == ["90 days"]


def test_an_irrelevant_question_abstains_before_generating(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD)
    answer = answer_question("How do I bake sourdough bread at home?", search=small_index(tmp_path), engine=engine)
    assert answer.abstained and answer.reason == "no_relevant_documents"
    assert answer.answer == NOT_COVERED and engine.prompts == []


def test_an_empty_generation_abstains(tmp_path: Path) -> None:
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=FakeEngine("  \n "))
    assert answer.abstained and answer.reason == "empty_answer"


def test_an_answer_that_aligns_with_no_chunk_abstains(tmp_path: Path) -> None:
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=FakeEngine("Paint it blue on Tuesdays."))
    assert answer.abstained and answer.reason == "no_citations"
    assert answer.unsupported_sentences == ["Paint it blue on Tuesdays."]


def test_the_answer_ends_at_the_stop_sequences_and_they_are_sent(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD + "\n### Question:\nand then?")
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=engine)
    assert answer.answer == GOOD
    assert set(STOP) <= set(engine.params[0].stop) and engine.params[0].max_tokens == 64


def test_a_prompt_the_engine_refuses_is_rebuilt_once_smaller(tmp_path: Path) -> None:
    index = small_index(tmp_path)
    roomy = FakeEngine(GOOD)
    answer_question(QUESTION, search=index, engine=roomy)
    engine = FakeEngine(GOOD, max_prompt_chars=len(roomy.prompts[0]) - 1)
    answer = answer_question(QUESTION, search=index, engine=engine)
    assert not answer.abstained and len(engine.prompts[0]) < len(roomy.prompts[0])


def test_a_question_too_long_for_any_prompt_is_a_prompt_too_long_error(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD, max_prompt_chars=10)
    with pytest.raises(PromptTooLongError):
        answer_question(QUESTION, search=small_index(tmp_path), engine=engine)


def test_a_context_too_small_for_any_passage_abstains(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD, context_length=80)  # 80 - 64 answer tokens - 8: the question alone
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=engine)
    assert answer.abstained and answer.reason == "context_too_small" and engine.prompts == []


def test_another_model_than_the_deployed_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelMismatchError, match="tiny-s3-v1"):
        answer_question(QUESTION, search=small_index(tmp_path), engine=FakeEngine(GOOD), model="tiny-s3-v0")


def test_the_deployed_model_may_be_named(tmp_path: Path) -> None:
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=FakeEngine(GOOD), model="tiny-s3-v1")
    assert not answer.abstained


def test_an_unknown_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownServiceError):
        answer_question(QUESTION, search=small_index(tmp_path), engine=FakeEngine(GOOD), service="nope")


class _Failing(FakeEngine):
    def __init__(self, error: Exception, *, in_info: bool = False) -> None:
        super().__init__()
        self.error, self.in_info = error, in_info

    def info(self):  # type: ignore[no-untyped-def]
        if self.in_info:
            raise self.error
        return super().info()

    def generate(self, prompt, params):  # type: ignore[no-untyped-def]
        raise self.error


def test_engine_errors_are_errors_not_abstentions(tmp_path: Path) -> None:
    index = small_index(tmp_path)
    with pytest.raises(EngineBusyError):
        answer_question(QUESTION, search=index, engine=_Failing(EngineBusyError("full")))
    with pytest.raises(NoModelDeployedError):
        # Even for a question the documents do not cover: no model is an error for every question.
        answer_question("bake bread", search=index, engine=_Failing(NoModelDeployedError("none"), in_info=True))


def test_a_length_cut_sentence_is_dropped_when_another_is_complete() -> None:
    assert clean_answer("Choose Edit. Then choose Ena", "length") == "Choose Edit."
    assert clean_answer("Choose Edit then Ena", "length") == "Choose Edit then Ena"
    assert clean_answer("Choose Edit. Then Ena", "stop") == "Choose Edit. Then Ena"


def test_a_streamed_answer_sends_deltas_then_the_checked_answer(tmp_path: Path) -> None:
    events = list(stream_answer(QUESTION, search=small_index(tmp_path), engine=FakeEngine(GOOD)))
    assert [e.event for e in events[:-1]] == ["delta"] * (len(events) - 1)
    assert "".join(e.data["text"] for e in events[:-1]) == GOOD
    final = events[-1]
    assert final.event == "answer" and final.data["citations"][0]["doc_key"] == "s3/Versioning.md"
    assert final.sse().startswith("event: answer\ndata: {")


def test_streamed_text_may_be_withdrawn_by_the_final_event(tmp_path: Path) -> None:
    engine = FakeEngine("Versioning keeps variants of an object for 90 days.")
    events = list(stream_answer(QUESTION, search=small_index(tmp_path), engine=engine))
    assert events[0].event == "delta"
    assert events[-1].data["abstained"] is True and events[-1].data["reason"] == "unsupported_claims"


def test_a_streamed_irrelevant_question_is_one_abstaining_event(tmp_path: Path) -> None:
    events = list(stream_answer("bake sourdough bread", search=small_index(tmp_path), engine=FakeEngine(GOOD)))
    assert [e.event for e in events] == ["answer"] and events[0].data["reason"] == "no_relevant_documents"


def test_the_engine_is_asked_to_copy_the_prose_sentences_that_name_the_question(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD)
    answer_question(QUESTION, search=small_index(tmp_path), engine=engine)
    sources = engine.params[0].copy_from
    assert sources and all(s in engine.prompts[0] for s in sources)
    # Each source is one sentence naming most of "enabl version bucket"; no headings or link lists.
    assert all("version" in s.lower() and not s.startswith(("#", "+ [", "|")) for s in sources)
    assert all(s.count(". ") == 0 for s in sources)


def test_without_copying_the_engine_generates_freely(tmp_path: Path) -> None:
    engine = FakeEngine(GOOD)
    answer = answer_question(QUESTION, search=small_index(tmp_path), engine=engine, copy=False)
    assert engine.params[0].copy_from is None and not answer.abstained


def test_passages_with_nothing_to_copy_abstain_before_generating(tmp_path: Path) -> None:
    # "s3 version work": the versioning page holds all three (its heading is "How it works"), but no
    # line of its text names "work": nothing answers how it works.
    engine = FakeEngine(GOOD)
    answer = answer_question("How does S3 versioning work?", search=small_index(tmp_path), engine=engine)
    assert answer.retrieval[0].coverage == 1.0
    assert answer.abstained and answer.reason == "no_answer_in_context"
    assert engine.prompts == []


def test_a_page_whose_best_sections_hold_no_line_to_copy_is_answered_from_its_section_that_does(
    tmp_path: Path,
) -> None:
    index = lead_below_details_index(tmp_path)
    best = [h.chunk_id for h in index.search("What is S3 Transfer Acceleration?", k=4)]
    assert best[-1] == "s3/transfer-acceleration.md#0"  # the lead scores last: the case under test
    engine = FakeEngine(LEAD)
    answer = answer_question("What is S3 Transfer Acceleration?", search=index, engine=engine)
    assert engine.params[0].copy_from == [LEAD]
    assert not answer.abstained and answer.citations[0].chunk_id == "s3/transfer-acceleration.md#0"
    # The response names the sections the prompt held.
    assert "s3/transfer-acceleration.md#0" in answer.retrieval[0].chunk_ids
