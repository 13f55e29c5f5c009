"""The dashboard's one stylesheet, served by the platform at :data:`CSS_PATH` (no CDN, no network).

Kept as a module constant so that it ships wherever the code does (the Lambda layer packages Python
modules). Colours meet WCAG AA contrast on white (text ≥ 4.5:1); focus is always visible.
"""

from __future__ import annotations

import hashlib

CSS = """
:root { --ink: #1b1f24; --muted: #4a5360; --line: #c9d1d9; --accent: #0b5cad; --bg: #ffffff; --soft: #f3f5f8;
  --ok: #11652f; --bad: #a4161a; --warn: #7a4b00; font-family: system-ui, sans-serif; color: var(--ink); }
body { margin: 0; background: var(--bg); line-height: 1.45; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, textarea:focus, main:focus {
  outline: 3px solid #f0a500; outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .5rem 1rem; background: var(--soft);
  border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.brand { font-weight: 700; margin: 0; } header ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0;
  flex-wrap: wrap; }
header a[aria-current=page] { font-weight: 700; color: var(--ink); }
main { padding: 1rem 1.5rem; max-width: 80rem; }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; } h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; min-width: 20rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; color: var(--muted); }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top;
  font-size: .92rem; }
th { background: var(--soft); } td.empty { color: var(--muted); font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 0 2rem; }
.badge { padding: 0 .4rem; border-radius: .6rem; border: 1px solid currentColor; font-size: .85rem;
  white-space: nowrap; }
.badge-approved, .badge-deployed, .badge-processed, .badge-ok, .badge-closed, .badge-verified { color: var(--ok); }
.badge-rejected, .badge-rolledback, .badge-quarantined, .badge-alarm, .badge-failed, .badge-mismatch, .badge-open {
  color: var(--bad); }
.badge-pendingmanualapproval, .badge-pending, .badge-insufficient_data, .badge-stale, .badge-running {
  color: var(--warn); }
.notice { padding: .5rem .75rem; border-left: 4px solid var(--accent); background: var(--soft); }
.notice-error { border-color: var(--bad); color: var(--bad); } .notice-ok { border-color: var(--ok); color: var(--ok); }
.field { margin: .4rem 0; } .field label { display: block; font-weight: 600; }
input[type=text], input[type=password], input[type=search], textarea, select { font: inherit; padding: .3rem;
  border: 1px solid var(--muted); min-width: 18rem; }
textarea { width: 100%; max-width: 48rem; min-height: 4rem; }
button { font: inherit; padding: .3rem .9rem; border: 1px solid var(--accent); background: var(--accent); color: #fff;
  cursor: pointer; border-radius: 3px; }
button.danger { background: var(--bad); border-color: var(--bad); }
form.inline { display: inline-flex; gap: .4rem; align-items: end; flex-wrap: wrap; margin: .25rem 0; }
.pager { display: flex; gap: 1rem; margin: .5rem 0 1rem; }
pre, .passage { background: var(--soft); padding: .6rem; overflow-x: auto; white-space: pre-wrap; max-width: 60rem; }
.answer { font-size: 1.05rem; max-width: 60rem; } .muted { color: var(--muted); }
figure { margin: .5rem 0 1rem; } figcaption { color: var(--muted); font-size: .9rem; }
.chart-bar { fill: var(--accent); } .chart-label, .chart-value { font-size: 12px; fill: var(--ink); }
.diff-added { color: var(--ok); } .diff-removed { color: var(--bad); }
"""

#: Versioned by content, so a browser may cache it for good.
CSS_PATH = "/dashboard/static/dashboard.css"
CSS_ETAG = '"' + hashlib.sha256(CSS.encode()).hexdigest()[:16] + '"'
