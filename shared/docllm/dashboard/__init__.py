"""The dashboard: server-rendered HTML pages over the platform's state (docs/dashboard.md).

``queries`` reads (a page at a time), ``views`` renders, ``actions`` changes things through the same
platform requests as the CLI, ``html`` escapes and lays out; ``docllm.api.dashboard_routes`` serves them.
"""
