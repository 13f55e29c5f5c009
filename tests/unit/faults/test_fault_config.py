"""Parsing ``DOCLLM_FAULTS`` and building injectors from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.exceptions import ConfigurationError, PermanentError
from docllm.faults import (
    SIDE_EFFECTS,
    FaultConfig,
    FaultRule,
    injector_from_env,
    job_fault_environment,
    parse_faults,
    reset_injectors,
)


@pytest.fixture(autouse=True)
def _fresh_injectors():
    reset_injectors()
    yield
    reset_injectors()


def test_the_documented_example_parses_into_rules_and_globals():
    cfg = parse_faults(
        "bus.publish:p=0.1;state.put:p=0.05;objects.get:p=0.05;jobs.submit:nth=1,after;seed=7;kill_after_side_effect=12"
    )
    assert cfg == FaultConfig(
        rules=(
            FaultRule("bus.publish", p=0.1),
            FaultRule("state.put", p=0.05),
            FaultRule("objects.get", p=0.05),
            FaultRule("jobs.submit", nth=1, after=True),
        ),
        seed=7,
        kill_after_side_effect=12,
    )


def test_options_whitespace_newlines_wildcards_and_trace():
    cfg = parse_faults(
        """
        state.*: nth=2, kill, after
        * : p=1 , raise, before
        kill_before_side_effect = 3 ; trace=/tmp/t.tsv
        """
    )
    assert cfg.rules == (FaultRule("state.*", nth=2, after=True, kill=True), FaultRule("*", p=1.0))
    assert cfg.kill_before_side_effect == 3 and cfg.kill_after_side_effect is None
    assert cfg.trace == Path("/tmp/t.tsv") and cfg.counts_side_effects


def test_an_empty_spec_injects_nothing_and_counts_nothing():
    cfg = parse_faults(" ; ")
    assert cfg == FaultConfig() and not cfg.counts_side_effects


def test_the_trace_argument_turns_counting_on():
    assert parse_faults("", trace="/tmp/x").trace == Path("/tmp/x")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("queues.delete:p=0.1", "unknown port 'queues'"),
        ("state:p=0.1", "'state' is not an operation"),
        ("state._private:p=0.1", "is not an operation"),
        ("state.put:p=1.5", "p must be between 0 and 1"),
        ("state.put:p=often", "p must be a number"),
        ("state.put:nth=0", "nth must be at least 1"),
        ("state.put:nth=two", "nth must be an integer"),
        ("state.put:p=0.1,nth=2", "exactly one of p=P or nth=N"),
        ("state.put:after", "exactly one of p=P or nth=N"),
        ("state.put:nth=1,explode", "unknown option 'explode'"),
        ("state.put:nth=1,,after", "empty option"),
        ("seed=abc", "seed must be an integer"),
        ("kill_after_side_effect=0", "kill_after_side_effect must be at least 1"),
        ("kill_before_side_effect=x", "kill_before_side_effect must be an integer"),
        ("trace=", "trace needs a file name"),
        ("kill_after=3", "neither OP:OPTIONS nor one of"),
    ],
)
def test_an_invalid_spec_is_a_configuration_error_that_says_what_is_wrong(spec, says):
    with pytest.raises(ConfigurationError, match="DOCLLM_FAULTS") as info:
        parse_faults(spec)
    assert says in str(info.value) and repr(spec) in str(info.value)
    assert isinstance(info.value, PermanentError)  # never retried


def test_no_variables_means_no_injector():
    assert injector_from_env({}) is None
    assert injector_from_env({"DOCLLM_FAULTS": "  ", "DOCLLM_FAULTS_TRACE": ""}) is None


def test_one_process_shares_one_injector_per_setting_until_reset(tmp_path):
    env = {"DOCLLM_FAULTS": "state.put:nth=1"}
    first = injector_from_env(env)
    assert first is not None and injector_from_env(dict(env)) is first
    assert injector_from_env({"DOCLLM_FAULTS": "state.put:nth=2"}) is not first
    traced = injector_from_env({"DOCLLM_FAULTS_TRACE": str(tmp_path / "t")})
    assert traced is not None and traced.config.trace == tmp_path / "t" and traced.config.rules == ()
    reset_injectors()
    assert injector_from_env(env) is not first


def test_an_invalid_environment_variable_fails_when_the_injector_is_built():
    with pytest.raises(ConfigurationError, match="unknown port"):
        injector_from_env({"DOCLLM_FAULTS": "disk.write:p=1"})


def test_jobs_get_the_job_variables_instead_of_the_runtime_ones():
    assert job_fault_environment({}) == {}
    assert job_fault_environment({"DOCLLM_FAULTS": "kill_after_side_effect=1"}) == {
        "DOCLLM_FAULTS": "",
        "DOCLLM_FAULTS_TRACE": "",
    }
    assert job_fault_environment({"DOCLLM_JOB_FAULTS": "objects.put:nth=1", "DOCLLM_JOB_FAULTS_TRACE": "/t"}) == {
        "DOCLLM_FAULTS": "objects.put:nth=1",
        "DOCLLM_FAULTS_TRACE": "/t",
    }


#: The ports' methods that change nothing: everything else a port declares must be a side effect.
READS = {
    "objects": {"get", "get_range", "head", "list", "download_file"},
    "bus": set(),
    "state": {"get", "query"},
    "queue": {"receive", "stats", "dead_letters"},
    "jobs": {"describe"},
    "search": {"search", "document_versions", "services"},
    "registry": {"get", "get_by_arn", "list", "aliases", "champion"},
    "compliance": {"get", "list", "uri"},
}


def test_every_method_of_every_port_is_classified_as_a_read_or_a_side_effect():
    from docllm.ports.bus import EventBus
    from docllm.ports.compliance import ComplianceStore
    from docllm.ports.jobs import JobRunner
    from docllm.ports.objects import ObjectStore
    from docllm.ports.queue import Queue
    from docllm.ports.registry import ModelRegistry
    from docllm.ports.search import SearchIndex
    from docllm.ports.state import StateStore

    ports = {
        "objects": ObjectStore,
        "bus": EventBus,
        "state": StateStore,
        "queue": Queue,
        "jobs": JobRunner,
        "search": SearchIndex,
        "registry": ModelRegistry,
        "compliance": ComplianceStore,
    }
    assert set(ports) == set(SIDE_EFFECTS)
    for name, port in ports.items():
        unclassified = set(port.__abstractmethods__) - SIDE_EFFECTS[name] - READS[name]
        assert not unclassified, f"{port.__name__}: add {sorted(unclassified)} to docllm.faults.SIDE_EFFECTS or READS"
        assert not SIDE_EFFECTS[name] & READS[name]
