"""A local platform with approved model versions deployed on the ``local`` target, engines faked, and
"CloudWatch Alarm State Change" events shaped as AWS documents them, for the rollback stage's tests."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from docllm.bootstrap import Platform
from docllm.ports.state import StateStore
from docllm.registry.models import PackageSpec
from docllm.service_layer import deploy
from docllm.service_layer.jobs import MODELS_PK
from docllm.settings import Settings
from tests.conftest import EVENTS_REAL, REPO

FAMILY = "tiny-s3"
SINGLE_METRIC = EVENTS_REAL / "awsdocs" / "cloudwatch-alarm-state-change-single-metric.json"


class FakeEngines:
    """``LocalEngines`` without processes: an engine "starts" at once and the endpoint record is the
    truth (its ``verify`` reads the record as the real one reads the record and ``/v1/models``)."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self.started: list[str] = []
        self.on_bake_end: Any = None
        self.fail_verify = 0

    def current(self) -> dict[str, Any] | None:
        return self._state.get(deploy.ENDPOINTS_PK, "local")

    def start(self, model_version: str, export_uri: str) -> dict[str, Any]:
        self.started.append(model_version)
        return {"url": f"http://127.0.0.1:1/{model_version}", "pid": 0, "export_dir": f"/engines/{model_version}"}

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        yield

    def verify(self, model_version: str) -> bool:
        if self.fail_verify > 0:
            self.fail_verify -= 1
            return False
        record = self.current() or {}
        return record.get("model_version") == model_version and not record.get("canary")

    def stop_all(self, timeout_s: float = 30) -> None:
        return None


def local_platform(data_dir: Path) -> Platform:
    settings = Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data_dir)})
    p = Platform(settings, template=REPO / "template.yaml")
    use_fake_engines(p)
    return p


def use_fake_engines(p: Platform) -> FakeEngines:
    engines = vars(p).get("engines")
    if not isinstance(engines, FakeEngines):
        engines = FakeEngines(p.state)
        vars(p)["engines"] = engines  # the cached_property's slot
    return engines


def add_model(p: Platform, version: str, *, status: str = "Approved", family: str = FAMILY) -> str:
    """A trained model record and its registry package (Approved unless said otherwise)."""
    p.state.put(
        MODELS_PK,
        version,
        {"version": version, "family": family, "export_uri": f"s3://ArtifactBucket/models/{version}/hf/"},
    )
    p.registry.register(
        PackageSpec(
            model_version=version,
            family=family,
            export_uri=f"s3://ArtifactBucket/models/{version}/hf/",
            report_uri=f"s3://ArtifactBucket/evaluations/eval-{version}/report.json",
            report_sha256="ab" * 32,
            evaluation_id=f"eval-{version}",
        )
    )
    if status != "PendingManualApproval":
        p.registry.set_status(version, status, f"test: {status}")  # type: ignore[arg-type]
    return version


def deploy_version(p: Platform, version: str, **canary: Any) -> dict[str, Any]:
    """Deploy ``version`` on local (as "Deployment Requested" would); distinct times for each deployment."""
    time.sleep(0.003)
    result = deploy.deploy(p, version, "local", f"req-{version}-{time.time_ns()}", **canary)
    time.sleep(0.003)
    return result


def now_stamp(offset_s: float = 0.0) -> str:
    """An alarm state timestamp as CloudWatch writes them (``...+0000``)."""
    t = datetime.now(UTC) + timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def alarm_event(
    name: str,
    *,
    value: str = "ALARM",
    stamp: str | None = None,
    target: str | None = "local",
    start: str | None = None,
    datapoints: tuple[float, ...] = (42.0, 55.5),
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A "CloudWatch Alarm State Change" for alarm ``name``: AWS's documented single-metric example
    with our names, the ``Target`` dimension and the state's time (now unless given)."""
    event = copy.deepcopy(base) if base is not None else _documented_example()
    stamp = stamp or now_stamp()
    detail = event["detail"]
    detail["alarmName"] = name
    event["resources"] = [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"]
    event["id"] = f"evt-{name}-{value}-{stamp}"
    for metric in detail["configuration"].get("metrics", []):
        stat = metric.get("metricStat")
        if stat is not None:
            stat["metric"]["namespace"] = "docllm"
            dims: dict[str, str] = {"service": "docllm"}
            if target is not None:
                dims["Target"] = target
            stat["metric"]["dimensions"] = dims
    reason_data = {
        "version": "1.0",
        "queryDate": stamp,
        "startDate": start or stamp,
        "statistic": "Average",
        "period": 10,
        "recentDatapoints": list(datapoints),
        "threshold": 5.0,
    }
    detail["state"] = {
        "value": value,
        "reason": f"Threshold Crossed: {len(datapoints)} datapoints were greater than the threshold (5.0).",
        "reasonData": json.dumps(reason_data),
        "timestamp": stamp,
    }
    return event


def _documented_example() -> dict[str, Any]:
    if SINGLE_METRIC.is_file():
        return json.loads(SINGLE_METRIC.read_text(encoding="utf-8"))
    # Without ../shared: the same shape, written out (AWS's "State change for a single-metric alarm").
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2019-10-02T17:04:40Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "alarmName": "x",
            "configuration": {
                "description": "",
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {"dimensions": {}, "name": "AskServerErrors", "namespace": "docllm"},
                            "period": 10,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ],
            },
            "previousState": {"reason": "", "timestamp": "2019-10-01T13:56:40.987+0000", "value": "OK"},
            "state": {"reason": "", "timestamp": "2019-10-02T17:04:40.989+0000", "value": "ALARM"},
        },
    }


def events_of(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.last(1000) if e.detail_type == detail_type]
