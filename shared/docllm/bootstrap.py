"""The one place that chooses adapters (STYLE.md item 3).

``Settings.backend`` says ``aws`` or ``local``; nothing else in the code base
asks. Every port is built lazily on first use, so a Lambda that never searches
never creates an OpenSearch client, and nothing is created at import time.

>>> from docllm.settings import Settings
>>> platform = build_platform(Settings.from_env({"DOCLLM_DATA_DIR": "/tmp/x"}))  # doctest: +SKIP
>>> platform.objects.put(platform.settings.raw_bucket, "s3/a.md", b"# A")        # doctest: +SKIP
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docllm.exceptions import ConfigurationError
from docllm.faults import FaultInjector, injector_from_env, job_fault_environment, reset_injectors, unwrap
from docllm.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

    from docllm.adapters.local.bus import EventLog
    from docllm.adapters.local.engines import LocalEngines
    from docllm.adapters.local.queue import SqliteQueue
    from docllm.ports.bus import EventBus
    from docllm.ports.compliance import ComplianceStore
    from docllm.ports.customization import ModelCustomizer
    from docllm.ports.inference import InferenceEngine
    from docllm.ports.jobs import JobRunner
    from docllm.ports.metrics import MetricsReader, MetricsSink
    from docllm.ports.notifier import Notifier
    from docllm.ports.objects import ObjectStore
    from docllm.ports.queue import Queue
    from docllm.ports.registry import ModelRegistry
    from docllm.ports.search import SearchIndex
    from docllm.ports.signer import ManifestSigner
    from docllm.ports.state import StateStore
    from docllm.runtime.template import Wiring


def find_template() -> Path:
    """``$DOCLLM_TEMPLATE``, else ``template.yaml`` in the source checkout the package runs from."""
    explicit = os.environ.get("DOCLLM_TEMPLATE")
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path(__file__).resolve().parents[2] / "template.yaml", Path.cwd() / "template.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigurationError("template.yaml not found: run from the docllm checkout or set DOCLLM_TEMPLATE")


class Platform:
    """Every port, built on first use for the configured backend."""

    def __init__(
        self, settings: Settings, *, template: Path | None = None, faults: FaultInjector | None = None
    ) -> None:
        self.settings = settings
        self._template = template
        # Fault injection (docs/faults.md): None, and raw adapters, unless DOCLLM_FAULTS or a test asks.
        self.faults = faults if faults is not None else injector_from_env()
        if settings.backend == "local" and settings.data_dir is None:
            raise ConfigurationError("the local backend needs a data directory")

    def _faulty(self, port: str, adapter: Any, *, label: str = "") -> Any:
        return adapter if self.faults is None else self.faults.wrap(port, adapter, label=label)

    @property
    def local(self) -> bool:
        return self.settings.backend == "local"

    @property
    def data_dir(self) -> Path:
        assert self.settings.data_dir is not None
        return self.settings.data_dir

    # -- wiring (local only) --------------------------------------------------
    @cached_property
    def wiring(self) -> Wiring:
        from docllm.runtime.template import read_wiring

        return read_wiring(self._template or find_template())

    @cached_property
    def queue(self) -> Queue:
        if self.local:
            return self.local_queue
        from docllm.adapters.aws.sqs import SqsQueue

        return SqsQueue()

    @cached_property
    def local_queue(self) -> SqliteQueue:
        from docllm.adapters.local.queue import QueueConfig, SqliteQueue

        configs = {
            q.name: QueueConfig(visibility_timeout_s=q.visibility_timeout_s, max_receive_count=q.max_receive_count)
            for q in self.wiring.queues.values()
            if q.name not in self.wiring.dlqs
        }
        return self._faulty("queue", SqliteQueue(self.data_dir / "queues.db", configs))

    @cached_property
    def event_log(self) -> EventLog:
        from docllm.adapters.local.bus import EventLog

        return EventLog(self.data_dir / "events.db")

    def _local_bus(self, name: str) -> EventBus:
        from docllm.adapters.local.bus import LocalEventBus

        # The bus's own enqueueing is part of its publish, not a side effect of its own.
        bus = LocalEventBus(name, self.wiring.rules, unwrap(self.local_queue), self.event_log)
        return self._faulty("bus", bus, label=name)

    # -- ports ----------------------------------------------------------------
    @cached_property
    def objects(self) -> ObjectStore:
        if self.local:
            from docllm.adapters.local.objects import LocalObjectStore

            # Notifications are what S3 does on AWS, not our side effect: the raw bus, never faulted.
            store = LocalObjectStore(self.data_dir / "objects", notify=lambda e: unwrap(self.default_bus).publish([e]))
            for bucket in self.wiring.buckets.values():
                store.create_bucket(bucket.name, versioned=bucket.versioned, notifications=bucket.eventbridge)
            return self._faulty("objects", store)
        from docllm.adapters.aws.s3 import S3ObjectStore

        return S3ObjectStore(kms_key_id=self.settings.kms_key_arn)

    @cached_property
    def bus(self) -> EventBus:
        """The platform's own bus (``DocllmBus``)."""
        if self.local:
            return self._local_bus(self.settings.event_bus)
        from docllm.adapters.aws.eventbridge import EventBridgeBus

        return EventBridgeBus(self.settings.event_bus)

    @cached_property
    def default_bus(self) -> EventBus:
        """The account's default bus, where S3 and SageMaker events arrive."""
        if self.local:
            return self._local_bus("default")
        from docllm.adapters.aws.eventbridge import EventBridgeBus

        return EventBridgeBus("default")

    @cached_property
    def state(self) -> StateStore:
        if self.local:
            from docllm.adapters.local.state import SqliteStateStore

            return self._faulty("state", SqliteStateStore(self.data_dir / "state.db"))
        from docllm.adapters.aws.dynamodb import DynamoStateStore

        return DynamoStateStore(self.settings.state_table)

    @cached_property
    def metrics(self) -> MetricsSink:
        if self.local:
            from docllm.adapters.local.metrics import SqliteMetrics

            return SqliteMetrics(self.data_dir / "metrics.db")
        from docllm.adapters.aws.metrics import PowertoolsMetrics

        return PowertoolsMetrics(namespace=self.settings.metrics_namespace, service="docllm")

    @cached_property
    def metrics_reader(self) -> MetricsReader:
        """The metrics read back: ``metrics.db`` (the local sink itself) locally, CloudWatch on AWS."""
        if self.local:
            from docllm.adapters.local.metrics import SqliteMetrics

            sink = self.metrics
            if not isinstance(sink, SqliteMetrics):  # never expected: the local sink is SqliteMetrics
                raise ConfigurationError(f"the local metrics sink {type(sink).__name__} cannot be read back")
            return sink
        from docllm.adapters.aws.metrics_reader import CloudWatchMetricsReader

        return CloudWatchMetricsReader(namespace=self.settings.metrics_namespace, service="docllm")

    @cached_property
    def jobs(self) -> JobRunner:
        if self.local:
            from docllm.adapters.local.jobs import LocalJobRunner

            # What the runner does for a job (channels, artefacts, state-change events) SageMaker does on AWS:
            # raw adapters. The job process itself gets DOCLLM_JOB_FAULTS, not DOCLLM_FAULTS.
            runner = LocalJobRunner(
                self.data_dir / "jobs",
                objects=unwrap(self.objects),
                default_bus=unwrap(self.default_bus),
                environment={
                    "DOCLLM_BACKEND": "local",
                    "DOCLLM_DATA_DIR": str(self.data_dir),
                    **job_fault_environment(),
                },
            )
            return self._faulty("jobs", runner)
        from docllm.adapters.aws.sagemaker import SageMakerJobRunner
        from docllm.ports.jobs import VpcConfig

        s = self.settings
        # Evaluation jobs run as their own role (they read user-supplied benchmarks, so they may not
        # write the weights they evaluate); the evaluate function knows only that role.
        role_arns = {"evaluate": s.sagemaker_evaluate_role_arn} if s.sagemaker_evaluate_role_arn else {}
        if not s.sagemaker_role_arn and not role_arns:
            raise ConfigurationError("neither DOCLLM_SAGEMAKER_ROLE_ARN nor DOCLLM_SAGEMAKER_EVALUATE_ROLE_ARN is set")
        images = {
            k: v
            for k, v in {"tokenizer": s.image_tokenizer, "train": s.image_train, "evaluate": s.image_evaluate}.items()
            if v
        }
        vpc = VpcConfig(subnets=s.subnet_ids, security_group_ids=s.security_group_ids) if s.subnet_ids else None
        return SageMakerJobRunner(
            role_arn=s.sagemaker_role_arn,
            role_arns=role_arns,
            image_uris=images,
            kms_key_id=s.kms_key_arn,
            vpc=vpc,
        )

    @cached_property
    def registry(self) -> ModelRegistry:
        """Model versions, their approval status and the family aliases (champion, previous)."""
        if self.local:
            from docllm.adapters.local.registry import LocalModelRegistry

            # Like SageMaker, the registry itself announces status changes on the default bus.
            registry = LocalModelRegistry(
                self.data_dir / "registry.db", default_bus=unwrap(self.default_bus), stage=self.settings.stage
            )
            return self._faulty("registry", registry)
        from docllm.adapters.aws.sagemaker_registry import SageMakerModelRegistry

        return SageMakerModelRegistry(stage=self.settings.stage)

    @cached_property
    def customizer(self) -> ModelCustomizer:
        """Managed customization of a provider's base model: Bedrock on AWS; locally a refusal
        with the reason (docs/customization.md)."""
        if self.local:
            from docllm.adapters.local.customization import LocalCustomizer

            return LocalCustomizer()
        from docllm.adapters.aws.bedrock_customization import BedrockCustomizer
        from docllm.ports.jobs import VpcConfig

        s = self.settings
        vpc = VpcConfig(subnets=s.subnet_ids, security_group_ids=s.security_group_ids) if s.subnet_ids else None
        return BedrockCustomizer(
            role_arn=os.environ.get("DOCLLM_BEDROCK_CUSTOMIZATION_ROLE_ARN") or None,
            kms_key_id=s.kms_key_arn,
            vpc=vpc,
        )

    @cached_property
    def signer(self) -> ManifestSigner:
        """Signs compliance manifests: a key in the data directory locally, a KMS asymmetric key on AWS."""
        if self.local:
            from docllm.adapters.local.signer import LocalKeySigner

            return LocalKeySigner(self.data_dir / "keys")
        from docllm.adapters.aws.kms_signer import KmsSigner

        if not self.settings.signing_key_arn:
            raise ConfigurationError("DOCLLM_SIGNING_KEY_ARN is not set")
        return KmsSigner(key_arn=self.settings.signing_key_arn)

    @cached_property
    def compliance(self) -> ComplianceStore:
        """Write-once store of signed manifests: append-only locally, S3 Object Lock on AWS."""
        if self.local:
            from docllm.adapters.local.compliance import AppendOnlyStore

            return self._faulty("compliance", AppendOnlyStore(self.data_dir / "compliance"))
        from docllm.adapters.aws.compliance import ObjectLockStore

        return ObjectLockStore(
            bucket=self.settings.compliance_bucket,
            kms_key_id=self.settings.kms_key_arn,
            retention_days=self.settings.manifest_retention_days,
        )

    @cached_property
    def notifier(self) -> Notifier:
        """Notifications for people: ``notifications.jsonl`` in the data directory locally, the alarm
        topic (``DOCLLM_ALARM_TOPIC_ARN``, the template's ``AlarmTopic``) on AWS."""
        if self.local:
            from docllm.adapters.local.notifier import LocalNotifier

            # Not a faulted port: a kill before or after a notification is a kill at the state writes
            # around it (the rollback records each step), which the fault injector counts already.
            return LocalNotifier(self.data_dir / "notifications.jsonl")
        from docllm.adapters.aws.sns_notifier import SnsNotifier

        return SnsNotifier(os.environ.get("DOCLLM_ALARM_TOPIC_ARN") or None)

    @cached_property
    def engines(self) -> LocalEngines:
        """The local deployment target: engine processes supervised by ``docllm up``."""
        if not self.local:
            raise ConfigurationError("local engines exist on the local platform only")
        from docllm.adapters.local.engines import LocalEngines

        return LocalEngines(self.data_dir / "engines", state=self.state, objects=unwrap(self.objects))

    @cached_property
    def inference(self) -> InferenceEngine:
        """The deployed model that answers: the local engine, or the AWS target's endpoint."""
        if self.local:
            from docllm.adapters.local.inference import LocalEngineClient

            return LocalEngineClient(self.state)
        from docllm.adapters.aws.deployed import deployed_inference

        return deployed_inference(self.state, self.settings.deploy_target)

    @cached_property
    def cloud_deployer(self) -> Any:
        """SageMaker endpoints and Bedrock imports (``docllm.adapters.aws.deployed.CloudDeployer``)."""
        from docllm.adapters.aws.deployed import CloudDeployer

        return CloudDeployer(self.settings)

    @cached_property
    def search(self) -> SearchIndex:
        if self.local:
            from docllm.adapters.local.search import LocalSearchIndex
            from docllm.service_layer.retriever import ActiveEncoder, encoder_cache_dir

            # The gated retriever (issue 18), if any: read from its verified files, swapped in when it changes.
            source = ActiveEncoder(self, encoder_cache_dir(self))
            return self._faulty("search", LocalSearchIndex(self.data_dir / "search", encoder_source=source))
        return self._opensearch(read_only=False)

    @cached_property
    def search_reader(self) -> SearchIndex:
        """The index the API reads. On AWS it is read-only: it never puts a template, alias,
        mapping or index (``search`` does, on the indexer's first write), so the API's role needs
        read permissions only. Locally it is ``search``, the one embedded index."""
        if self.local:
            return self.search
        return self._opensearch(read_only=True)

    def _opensearch(self, *, read_only: bool) -> SearchIndex:
        from docllm.adapters.aws.opensearch import OpenSearchIndex
        from docllm.service_layer.retriever import ActiveEncoder, encoder_cache_dir

        if not self.settings.search_endpoint:
            raise ConfigurationError("DOCLLM_SEARCH_ENDPOINT is not set")
        return OpenSearchIndex(
            endpoint=self.settings.search_endpoint,
            region=os.environ.get("AWS_REGION"),
            signing_service=self.settings.search_service,
            read_only=read_only,
            # The same gated encoder as the embedded index (issue 18); hybrid only where the live
            # index was built for it, never on Serverless (adapters/aws/opensearch.py).
            encoder_source=ActiveEncoder(self, encoder_cache_dir(self)),
        )

    def idempotency_store(self) -> BasePersistenceLayer:
        """A new persistence layer: Powertools configures one per decorated function, so
        functions sharing a process (the local runtime) must not share one."""
        if self.local:
            from docllm.adapters.local.idempotency import SqliteIdempotencyStore

            return SqliteIdempotencyStore(self.data_dir / "idempotency.db")
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        return DynamoDBPersistenceLayer(table_name=self.settings.idempotency_table)


_PLATFORMS: dict[Any, Platform] = {}


def build_platform(settings: Settings | None = None) -> Platform:
    """The process's platform for ``settings`` (from the environment when omitted), built once."""
    settings = settings or Settings.from_env()
    key = settings.model_dump_json()
    if key not in _PLATFORMS:
        _PLATFORMS[key] = Platform(settings)
    return _PLATFORMS[key]


def reset_platforms() -> None:
    """Forget cached platforms (tests that change the environment), and the fault injectors built
    from ``DOCLLM_FAULTS``: their counters start again."""
    _PLATFORMS.clear()
    reset_injectors()
