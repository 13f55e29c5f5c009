"""Read ``template.yaml`` into the wiring the local runtime runs.

This is how there is one wiring, not two: the runtime never lists queues,
rules, schedules or functions of its own. Intrinsic functions are resolved the way the
local platform names things: ``Ref`` of a resource is its logical id (the
local bucket, table, queue and bus names), ``Ref`` of a parameter is its
default (or the local override: :data:`LOCAL_PARAMETERS`), ``GetAtt X.Arn`` is a
local ARN whose last segment is the logical id, ``GetAtt X.QueueName`` (and
``.TopicName``) is the logical id.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from docllm.exceptions import ConfigurationError

ACCOUNT = "000000000000"
REGION = "local"
#: Parameters the local platform always resolves to its own value: it deploys to the local engine.
LOCAL_PARAMETERS: dict[str, str] = {"DeployTarget": "local"}
#: ``KEY=VALUE`` pairs (spaces or commas between them) that override the template's parameter defaults
#: on the local platform, as ``sam deploy --parameter-overrides`` does on AWS (an alarm's threshold).
ENV_PARAMETER_OVERRIDES = "DOCLLM_PARAMETER_OVERRIDES"


def local_parameters(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parameters the local platform resolves the template with: the overrides of
    ``DOCLLM_PARAMETER_OVERRIDES``, then :data:`LOCAL_PARAMETERS` (which no override changes).

    >>> local_parameters({"DOCLLM_PARAMETER_OVERRIDES": "AskLatencyP99AlarmMs=4000 Stage=x"})
    {'AskLatencyP99AlarmMs': '4000', 'Stage': 'x', 'DeployTarget': 'local'}
    """
    raw = (os.environ if environ is None else environ).get(ENV_PARAMETER_OVERRIDES, "")
    overrides: dict[str, str] = {}
    for item in raw.replace(",", " ").split():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigurationError(f"{ENV_PARAMETER_OVERRIDES}: {item!r} is not KEY=VALUE")
        overrides[key] = value
    return {**overrides, **LOCAL_PARAMETERS}


#: ``GetAtt`` attributes that name a resource: locally, its logical id.
_NAME_ATTRIBUTES = ("QueueName", "TopicName")
_SHORT_TAGS = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Condition",
    "GetAtt",
    "Ref",
    "ToJsonString",
    "Length",
)


# libyaml's parser when PyYAML has it (10x faster: every runtime start and every kill-point test
# reads the whole template), the pure-Python one otherwise; both construct the same objects.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!GetAtt``…)."""


def _construct(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if tag == "Ref":
            return {"Ref": value}
        if tag == "Condition":
            return {"Condition": value}
        if tag == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag}": value}

    return construct


for _tag in _SHORT_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path) -> dict[str, Any]:
    """The template as a dict (a fresh copy each call: callers may change it)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = copy.deepcopy(_parse(text))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigurationError(f"cannot read template {path}: {e}") from e
    if not isinstance(data, dict) or "Resources" not in data:
        raise ConfigurationError(f"{path} is not a CloudFormation/SAM template")
    return data


@functools.lru_cache(maxsize=4)
def _parse(text: str) -> Any:
    # Keyed by the text itself, so an edited template is parsed again. Building the objects is Python
    # even with libyaml (57 ms for this project's 320 kB template, more in a busy process: docs/decisions.md);
    # a platform start reads the template twice (the runtime's wiring, the platform's), and the
    # kill-point tests start hundreds.
    return yaml.load(text, Loader=_CfnLoader)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    visibility_timeout_s: int
    max_receive_count: int
    dlq: str | None


@dataclass(frozen=True)
class RuleSpec:
    name: str
    bus: str
    pattern: dict[str, Any]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class SqsSource:
    queue: str
    batch_size: int
    report_failures: bool


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    code_uri: str
    handler: str
    timeout_s: int
    environment: dict[str, str]
    sqs_sources: tuple[SqsSource, ...] = ()
    http_routes: tuple[HttpRoute, ...] = ()


@dataclass(frozen=True)
class BucketSpec:
    name: str
    versioned: bool
    eventbridge: bool


@dataclass(frozen=True)
class ScheduleSpec:
    """An EventBridge Scheduler schedule (``AWS::Scheduler::Schedule`` or a SAM ``ScheduleV2`` event).

    ``target`` is a function (invoked with ``input`` parsed as its event) or a queue (``input``
    sent as the message body), by logical id.
    """

    name: str
    expression: str
    target: str
    input: str | None
    timezone: str = "UTC"
    #: ``RetryPolicy`` (Scheduler's defaults: 185 retries, events up to a day old).
    max_retries: int = 185
    max_event_age_s: int = 86400


@dataclass
class Wiring:
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    rules: list[RuleSpec] = field(default_factory=list)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    buckets: dict[str, BucketSpec] = field(default_factory=dict)
    buses: set[str] = field(default_factory=lambda: {"default"})
    dlqs: set[str] = field(default_factory=set)
    schedules: list[ScheduleSpec] = field(default_factory=list)

    def rules_for(self, bus: str) -> list[RuleSpec]:
        return [r for r in self.rules if r.bus == bus]

    def consumer_of(self, queue: str) -> FunctionSpec | None:
        for fn in self.functions.values():
            if any(s.queue == queue for s in fn.sqs_sources):
                return fn
        return None


class _Resolver:
    def __init__(self, template: dict[str, Any], parameters: Mapping[str, str] | None = None) -> None:
        self.resources: dict[str, Any] = template.get("Resources", {})
        self.params = {k: v.get("Default", "") for k, v in (template.get("Parameters") or {}).items()}
        # Overrides apply to the template's own parameters only: an unknown name stays an error of !Ref.
        self.params.update({k: v for k, v in (parameters or {}).items() if k in self.params})
        self.conditions: dict[str, Any] = template.get("Conditions") or {}
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::StackName": "docllm-local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            return name
        raise ConfigurationError(f"template: !Ref to unknown name {name!r}")

    def get_att(self, logical: str, attr: str) -> str:
        if logical not in self.resources:
            raise ConfigurationError(f"template: !GetAtt of unknown resource {logical!r}")
        rtype = str(self.resources[logical].get("Type", ""))
        service = rtype.split("::")[1].lower() if "::" in rtype else "local"
        if attr == "Arn":
            return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical}"
        if attr in _NAME_ATTRIBUTES:
            return logical
        return f"local-{logical}-{attr}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Condition":
                return self.condition(str(arg))
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(str(parts[0]), str(parts[1]))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.resolve(i)) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(str(sep))
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(str(cond)) else no)
            if key == "Fn::Equals":
                a, b = arg
                return str(self.resolve(a)) == str(self.resolve(b))
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key.startswith("Fn::"):
                raise ConfigurationError(f"template: {key} is not supported by the local runtime")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local_vars = {k: self.resolve(v) for k, v in variables.items()}

        def replace(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in local_vars:
                return str(local_vars[expr])
            if "." in expr:
                logical, attr = expr.split(".", 1)
                return self.get_att(logical, attr)
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def _logical_from_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def read_resources(
    path: Path | str, resource_type: str, *, parameters: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The resolved ``Properties`` of every resource of ``resource_type`` the template creates
    (those whose ``Condition`` is false are left out, as CloudFormation leaves them out), by logical id.

    ``parameters`` override the template's defaults (the local platform passes
    :data:`LOCAL_PARAMETERS` and its stage).
    """
    template = load_template(Path(path))
    r = _Resolver(template, {**local_parameters(), **(parameters or {})})
    out: dict[str, dict[str, Any]] = {}
    for logical, res in r.resources.items():
        if res.get("Type") != resource_type:
            continue
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        out[logical] = r.resolve(res.get("Properties") or {})
    return out


def read_wiring(path: Path | str, *, parameters: Mapping[str, str] | None = None) -> Wiring:
    """Parse the routing parts of ``template.yaml`` (with :data:`LOCAL_PARAMETERS` and ``parameters``).

    Raises
    ------
    ConfigurationError
        When a rule targets something that is not a queue, a function reads
        from a queue the template does not define, or a schedule targets
        something that is neither a function nor a queue.
    """
    template = load_template(Path(path))
    r = _Resolver(template, {**local_parameters(), **(parameters or {})})
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    global_env = {
        k: _env_str(r.resolve(v)) for k, v in ((globals_fn.get("Environment") or {}).get("Variables") or {}).items()
    }
    global_timeout = int(r.resolve(globals_fn.get("Timeout", 3)))
    w = Wiring()
    for logical, res in r.resources.items():
        rtype = res.get("Type")
        props = res.get("Properties") or {}
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        if rtype == "AWS::SQS::Queue":
            redrive = r.resolve(props.get("RedrivePolicy") or {})
            dlq = _logical_from_arn(str(redrive["deadLetterTargetArn"])) if redrive else None
            w.queues[logical] = QueueSpec(
                name=logical,
                visibility_timeout_s=int(r.resolve(props.get("VisibilityTimeout", 30))),
                max_receive_count=int(redrive.get("maxReceiveCount", 1_000_000)) if redrive else 1_000_000,
                dlq=dlq,
            )
            if dlq:
                w.dlqs.add(dlq)
        elif rtype == "AWS::Events::EventBus":
            w.buses.add(logical)
        elif rtype == "AWS::S3::Bucket":
            notif = r.resolve(props.get("NotificationConfiguration") or {})
            versioning = r.resolve(props.get("VersioningConfiguration") or {})
            w.buckets[logical] = BucketSpec(
                name=logical,
                versioned=versioning.get("Status") == "Enabled",
                eventbridge=bool((notif.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled")),
            )
        elif rtype == "AWS::Events::Rule":
            if str(r.resolve(props.get("State", "ENABLED"))) != "ENABLED":
                continue
            bus = r.resolve(props.get("EventBusName", "default")) or "default"
            targets = []
            for t in r.resolve(props.get("Targets") or []):
                arn = str(t["Arn"])
                if ":sqs:" not in arn:
                    raise ConfigurationError(f"rule {logical}: the local runtime routes to SQS queues only ({arn})")
                targets.append(_logical_from_arn(arn))
            w.rules.append(RuleSpec(logical, str(bus), r.resolve(props["EventPattern"]), tuple(targets)))
        elif rtype == "AWS::Scheduler::Schedule":
            resolved = r.resolve(props)
            if str(resolved.get("State", "ENABLED")) != "ENABLED":
                continue
            target = resolved.get("Target") or {}
            w.schedules.append(
                ScheduleSpec(
                    name=logical,
                    expression=str(resolved["ScheduleExpression"]),
                    target=_logical_from_arn(str(target.get("Arn", ""))),
                    input=_input_str(target.get("Input")),
                    timezone=str(resolved.get("ScheduleExpressionTimezone") or "UTC"),
                    **_retry_policy(target.get("RetryPolicy")),
                )
            )
        elif rtype == "AWS::Serverless::Function":
            env = dict(global_env)
            env.update(
                {
                    k: _env_str(r.resolve(v))
                    for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
                }
            )
            sqs, routes = [], []
            for ev_name, ev in (props.get("Events") or {}).items():
                ev_props = r.resolve(ev.get("Properties") or {})
                if ev.get("Type") == "SQS":
                    sqs.append(
                        SqsSource(
                            queue=_logical_from_arn(str(ev_props["Queue"])),
                            batch_size=int(ev_props.get("BatchSize", 10)),
                            report_failures="ReportBatchItemFailures" in (ev_props.get("FunctionResponseTypes") or []),
                        )
                    )
                elif ev.get("Type") in ("HttpApi", "Api"):
                    routes.append(HttpRoute(str(ev_props.get("Method", "ANY")).upper(), str(ev_props.get("Path", "/"))))
                # SAM's ScheduleV2 is a Scheduler schedule. (Its "Schedule" events, EventBridge rules, are not
                # run locally: the one the template has, the outbox sweep, is the runtime's relay thread.)
                elif ev.get("Type") == "ScheduleV2" and ev_props.get("State", "ENABLED") == "ENABLED":
                    w.schedules.append(
                        ScheduleSpec(
                            name=f"{logical}{ev_name}",
                            expression=str(ev_props["ScheduleExpression"]),
                            target=logical,
                            input=_input_str(ev_props.get("Input")),
                            timezone=str(ev_props.get("ScheduleExpressionTimezone") or "UTC"),
                            **_retry_policy(ev_props.get("RetryPolicy")),
                        )
                    )
            w.functions[logical] = FunctionSpec(
                name=logical,
                code_uri=str(r.resolve(props.get("CodeUri", ""))),
                handler=str(r.resolve(props.get("Handler", "app.handler"))),
                timeout_s=int(r.resolve(props.get("Timeout", global_timeout))),
                environment=env,
                sqs_sources=tuple(sqs),
                http_routes=tuple(routes),
            )
    for rule in w.rules:
        if rule.bus not in w.buses:
            raise ConfigurationError(f"rule {rule.name}: unknown event bus {rule.bus!r}")
        for target in rule.targets:
            if target not in w.queues:
                raise ConfigurationError(f"rule {rule.name}: target {target!r} is not a queue in the template")
    for fn in w.functions.values():
        for src in fn.sqs_sources:
            if src.queue not in w.queues:
                raise ConfigurationError(f"function {fn.name}: queue {src.queue!r} is not in the template")
    for schedule in w.schedules:
        if schedule.target not in w.functions and schedule.target not in w.queues:
            raise ConfigurationError(
                f"schedule {schedule.name}: the local runtime invokes functions and sends to queues only "
                f"({schedule.target!r} is neither)"
            )
    return w


def _retry_policy(policy: Any) -> dict[str, int]:
    policy = policy or {}
    out: dict[str, int] = {}
    if policy.get("MaximumRetryAttempts") is not None:
        out["max_retries"] = int(policy["MaximumRetryAttempts"])
    if policy.get("MaximumEventAgeInSeconds") is not None:
        out["max_event_age_s"] = int(policy["MaximumEventAgeInSeconds"])
    return out


def _input_str(value: Any) -> str | None:
    """A target's ``Input``: the JSON text (a mapping in the template is written as JSON)."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _env_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
