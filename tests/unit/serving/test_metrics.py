from __future__ import annotations

from docllm.serving.metrics import Registry


def test_counters_gauges_and_histograms_render_in_prometheus_text_format() -> None:
    reg = Registry()
    requests = reg.counter("x_requests_total", "Requests.", ("route", "status"))
    requests.inc(route="/v1/completions", status="200")
    requests.inc(route="/v1/completions", status="200")
    reg.gauge("x_queue_depth", "Waiting.", lambda: 3)
    latency = reg.histogram("x_latency_seconds", "Latency.", buckets=(0.1, 1.0))
    latency.observe(0.05)
    latency.observe(0.5)
    latency.observe(5.0)
    assert reg.render().splitlines() == [
        "# HELP x_requests_total Requests.",
        "# TYPE x_requests_total counter",
        'x_requests_total{route="/v1/completions",status="200"} 2.0',
        "# HELP x_queue_depth Waiting.",
        "# TYPE x_queue_depth gauge",
        "x_queue_depth 3.0",
        "# HELP x_latency_seconds Latency.",
        "# TYPE x_latency_seconds histogram",
        'x_latency_seconds_bucket{le="0.1"} 1',
        'x_latency_seconds_bucket{le="1.0"} 2',
        'x_latency_seconds_bucket{le="+Inf"} 3',
        "x_latency_seconds_sum 5.55",
        "x_latency_seconds_count 3",
    ]


def test_label_values_are_escaped() -> None:
    reg = Registry()
    reg.counter("x_total", "X.", ("path",)).inc(path='a"b\\c\nd')
    assert 'x_total{path="a\\"b\\\\c\\nd"} 1.0' in reg.render()
