"""The dashboard's routes on the API's resolver (docs/dashboard.md).

:func:`register` adds them to a resolver :func:`docllm.api.routes.create_app` builds. Pages are GETs
that only read; forms that change something are POSTs that carry a CSRF token and an ``Origin`` of
this host, and answer with a redirect to the page that shows the outcome (or the page again with a
message and a 400 when the input is bad). Every answer is HTML with a strict Content-Security-Policy:
no script runs, nothing loads from elsewhere.

Authentication is the API's: the HTTP API's authorizer (IAM on AWS) or the local front's API key, which
a browser presents as the session cookie :mod:`docllm.dashboard.auth` describes.
"""

from __future__ import annotations

import base64
import hmac
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import ValidationError

from docllm.bootstrap import Platform, build_platform
from docllm.dashboard import actions, views
from docllm.dashboard.auth import LOGIN_PATH, clear_cookie_header, csrf_token, set_cookie_header
from docllm.dashboard.html import Html, field, form, h, layout, message, url
from docllm.dashboard.style import CSS, CSS_ETAG, CSS_PATH

HTML = "text/html; charset=utf-8"
#: No script, no frame, nothing from elsewhere; forms post only here.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: The evaluation report is one self-contained file with inline styles and SVG plots.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'none'"
MAX_PARAM = 2000
MAX_FORM_BYTES = 1024 * 1024
NOTICES = {
    "review": "Review submitted: the gate applies it in a moment (reload to see the new status).",
    "rollback": "Rollback requested: the deployer is redeploying the previous approved version.",
    "benchmark": "Benchmark uploaded: the next evaluation runs it.",
}

Page = Callable[[Platform, dict[str, str], views.View], Html]


def _headers(**extra: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        # Same-origin: a form post then carries its Origin, which the CSRF check compares.
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        **extra,
    }


def _html(status: int, page: str, **headers: str) -> Response[str]:
    return Response(status_code=status, content_type=HTML, body=page, headers=_headers(**headers))


def _redirect(location: str, **headers: str) -> Response[str]:
    return Response(status_code=303, content_type="text/plain", body="", headers={"Location": location, **headers})


def _secret_file(p: Platform, name: str) -> Path | None:
    return (p.data_dir / name) if p.local else None


def api_key(p: Platform) -> str | None:
    """The key ``docllm up`` checks (None where the platform has none: AWS, or a run without auth)."""
    path = _secret_file(p, "api-key")
    if path is None or not path.exists():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def csrf_secret(p: Platform) -> str | None:
    """A secret of this data directory for CSRF tokens (created 0600 on first use); None on AWS, where the
    dashboard takes no actions (see :mod:`docllm.dashboard.auth`)."""
    path = _secret_file(p, "dashboard-secret")
    if path is None:
        return None
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it meanwhile: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    return path.read_text(encoding="utf-8").strip()


def _checked(params: dict[str, str]) -> dict[str, str]:
    for name, value in params.items():
        if len(value) > MAX_PARAM:
            raise views.BadInput(f"{name} is too long: at most {MAX_PARAM} characters")
        if any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in value):
            raise views.BadInput(f"{name} holds a control character")
    return params


class _Dashboard:
    """The routes' shared reading of the current request (one per resolver, as the resolver is)."""

    def __init__(self, app: APIGatewayHttpResolver) -> None:
        self.app = app

    # -- the request --------------------------------------------------------------------------
    def params(self) -> dict[str, str]:
        return _checked({k: str(v) for k, v in (self.app.current_event.query_string_parameters or {}).items()})

    def raw_body(self) -> bytes:
        event = self.app.current_event
        body = event.body or ""
        data = base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")
        if len(data) > MAX_FORM_BYTES:
            raise views.BadInput(f"the form is too large: at most {MAX_FORM_BYTES // 1024} KiB")
        return data

    def header(self, name: str) -> str:
        return str({k.lower(): v for k, v in (self.app.current_event.headers or {}).items()}.get(name, ""))

    def form(self) -> dict[str, str]:
        ctype = self.header("content-type").lower()
        if not ctype.startswith("application/x-www-form-urlencoded"):
            raise views.BadInput("send the form as the page does (application/x-www-form-urlencoded)")
        try:
            pairs = parse_qsl(self.raw_body().decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError) as e:
            raise views.BadInput(f"the form could not be read: {e}") from None
        return _checked(dict(pairs))

    def same_origin(self) -> bool:
        """``Origin`` (else ``Referer``), when the browser sends one, names this host."""
        origin = self.header("origin") or self.header("referer")
        if not origin or origin == "null":
            return not origin
        return urlsplit(origin).netloc.lower() == self.header("host").lower()

    def csrf_ok(self, p: Platform, given: str | None) -> bool:
        secret = csrf_secret(p)
        if secret is None or not given:
            return False
        return hmac.compare_digest(given.encode(), csrf_token(secret).encode()) and self.same_origin()

    # -- rendering ----------------------------------------------------------------------------
    def render(
        self,
        title: str,
        active: str,
        page: Page,
        *,
        notices: list[Html] | None = None,
        status: int = 200,
        params: dict[str, str] | None = None,
    ) -> Response[str]:
        p = build_platform()
        secret = csrf_secret(p)
        view = views.View(csrf=csrf_token(secret) if secret else None, notices=list(notices or []))
        try:
            args = params if params is not None else self.params()
            notice = NOTICES.get(args.get("done", ""))
            if notice:
                view.notices.append(message(notice, kind="ok"))
            body = page(p, args, view)
        except views.BadInput as e:
            return _html(400, layout(title, message(str(e), kind="error"), active=active))
        except LookupError as e:
            return _html(
                404, layout("Not found", message(str(e.args[0] if e.args else e), kind="error"), active=active)
            )
        return _html(status, layout(title, body, active=active))


def register(app: APIGatewayHttpResolver) -> None:
    """Add the dashboard's routes to ``app``."""
    d = _Dashboard(app)

    def page(path: str, title: str, view: Page, active: str | None = None) -> None:
        app.get(path, include_in_schema=False)(lambda: d.render(title, active or path, view))

    page("/dashboard", "Overview", views.overview)
    page("/dashboard/documents", "Documents", views.documents)
    page("/dashboard/document", "Document", views.document, "/dashboard/documents")
    page("/dashboard/passage", "Cited passage", views.passage, "/dashboard/ask")
    page("/dashboard/models", "Models", views.models)
    page("/dashboard/model", "Model version", views.model, "/dashboard/models")
    page("/dashboard/changelog", "Changelog", views.changelog, "/dashboard/models")
    page("/dashboard/benchmarks", "Benchmarks", views.benchmarks)
    page("/dashboard/deployments", "Deployments", views.deployments)
    page("/dashboard/incidents", "Incidents", views.incidents)
    page("/dashboard/incident", "Incident", views.incident, "/dashboard/incidents")

    @app.get(CSS_PATH, include_in_schema=False)
    def stylesheet() -> Response[str]:
        return Response(
            status_code=200,
            content_type="text/css; charset=utf-8",
            body=CSS,
            headers={"Cache-Control": "public, max-age=86400", "ETag": CSS_ETAG, "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/dashboard/ask", include_in_schema=False)
    def ask_page() -> Response[str]:
        return d.render("Ask", "/dashboard/ask", _ask)

    def _ask(p: Platform, params: dict[str, str], view: views.View) -> Html:
        from docllm.answers.exceptions import RateLimitedError
        from docllm.answers.models import AskRequest
        from docllm.answers.service import answer_question
        from docllm.api.routes import ask_limiter, caller_key
        from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, NoModelDeployedError

        question = params.get("question", "").strip()
        if not question:
            return views.ask(p, params, view)
        try:
            request = AskRequest(question=question)
        except ValidationError as e:
            raise views.BadInput("; ".join(str(err["msg"]) for err in e.errors())) from None
        try:
            ask_limiter().take(caller_key(app.current_event))
            answer = answer_question(request.question, search=p.search_reader, engine=p.inference, k=request.k)
        except NoModelDeployedError:
            view.notices.append(
                message(
                    "No model is deployed to answer questions yet: approve and deploy a model version first.",
                    kind="error",
                )
            )
            return views.ask(p, params, view)
        except EngineUnavailableError:
            view.notices.append(
                message("The model serving answers is not available right now: try again shortly.", kind="error")
            )
            return views.ask(p, params, view)
        except (EngineBusyError, RateLimitedError):
            view.notices.append(message("Too many questions at once: wait a moment and ask again.", kind="error"))
            return views.ask(p, params, view)
        return views.ask(p, params, view, answer=answer)

    @app.get("/dashboard/report", include_in_schema=False)
    def report() -> Response[str]:
        from docllm.dashboard import queries as q
        from docllm.exceptions import NotFoundError

        p = build_platform()
        version = d.params().get("version", "")
        pkg = q.package(p, version)
        evaluation = q.evaluation(p, pkg.evaluation_id if pkg else None) or {}
        uri = str(evaluation.get("html_uri") or "")
        if not uri.startswith("s3://"):
            return d.render(
                "Report",
                "/dashboard/models",
                lambda *_: Html(message(f"no evaluation report for {version!r}", kind="error")),
                status=404,
            )
        bucket, _, key = uri[5:].partition("/")
        try:
            body = p.objects.get(bucket, key).decode("utf-8")
        except NotFoundError:
            return d.render(
                "Report",
                "/dashboard/models",
                lambda *_: Html(message("the report file is missing", kind="error")),
                status=404,
            )
        return Response(
            status_code=200, content_type=HTML, body=body, headers={**_headers(), "Content-Security-Policy": REPORT_CSP}
        )

    @app.get("/dashboard/verify", include_in_schema=False)
    def verify() -> Response[str]:
        """Verify a manifest now: read-only (it recomputes and compares), so a GET anyone signed in may ask."""
        from docllm.exceptions import NotFoundError
        from docllm.service_layer import manifest

        params = d.params()
        version = params.get("version", "")
        p = build_platform()
        try:
            result = manifest.verify(p, version)
        except NotFoundError as e:
            notice = message(f"cannot verify: {e}", kind="error")
        else:
            if result.ok:
                notice = message(
                    f"Manifest verified: {result.manifest_key} (signature, chain and every digest match).", kind="ok"
                )
            else:
                problems = "; ".join(f"{m.kind} {m.subject}" for m in result.mismatches[:10])
                notice = message(f"Manifest MISMATCH in {result.manifest_key}: {problems}", kind="error")
        return d.render(
            "Model version", "/dashboard/models", views.model, notices=[notice], params={"version": version}
        )

    def _post(
        handler: Callable[[Platform, dict[str, str]], Response[str]],
        title: str,
        active: str,
        view: Page,
        back: Callable[[dict[str, str]], dict[str, str]],
    ) -> Response[str]:
        p = build_platform()
        try:
            fields = d.form()
        except views.BadInput as e:
            return d.render(title, active, view, notices=[message(str(e), kind="error")], status=400, params={})
        if not d.csrf_ok(p, fields.get("csrf")):
            return _html(
                403,
                layout(
                    "Refused",
                    message(
                        "This form expired or came from another site: reload the page and try again.", kind="error"
                    ),
                    active=active,
                ),
            )
        try:
            return handler(p, fields)
        except actions.ActionRefused as e:
            return d.render(
                title, active, view, notices=[message(str(e), kind="error")], status=400, params=back(fields)
            )

    @app.post("/dashboard/review", include_in_schema=False)
    def review() -> Response[str]:
        def go(p: Platform, f: dict[str, str]) -> Response[str]:
            actions.review(p, f.get("version", ""), f.get("decision", ""), f.get("reason"))
            return _redirect(url("/dashboard/model", version=f.get("version", ""), done="review"))

        return _post(go, "Model version", "/dashboard/models", views.model, lambda f: {"version": f.get("version", "")})

    @app.post("/dashboard/rollback", include_in_schema=False)
    def rollback() -> Response[str]:
        def go(p: Platform, f: dict[str, str]) -> Response[str]:
            target = f.get("target", "")
            actions.rollback(p, target, f.get(f"reason-{target}") or f.get("reason"))
            return _redirect(url("/dashboard/deployments", done="rollback"))

        return _post(go, "Deployments", "/dashboard/deployments", views.deployments, lambda f: {})

    @app.post("/dashboard/benchmarks", include_in_schema=False)
    def upload() -> Response[str]:
        p = build_platform()
        try:
            fields = actions.parse_multipart(d.header("content-type"), d.raw_body())
        except (actions.ActionRefused, views.BadInput) as e:
            return d.render(
                "Benchmarks",
                "/dashboard/benchmarks",
                views.benchmarks,
                notices=[message(str(e), kind="error")],
                status=400,
                params={},
            )
        token = fields.get("csrf", (None, b""))[1].decode("utf-8", "replace")
        if not d.csrf_ok(p, token):
            return _html(
                403,
                layout(
                    "Refused",
                    message(
                        "This form expired or came from another site: reload the page and try again.", kind="error"
                    ),
                    active="/dashboard/benchmarks",
                ),
            )
        filename, body = fields.get("file", (None, b""))
        try:
            actions.upload_benchmark(p, filename, body)
        except actions.ActionRefused as e:
            return d.render(
                "Benchmarks",
                "/dashboard/benchmarks",
                views.benchmarks,
                notices=[message(str(e), kind="error")],
                status=400,
                params={},
            )
        return _redirect("/dashboard/benchmarks?done=benchmark")

    # -- signing in ----------------------------------------------------------------------------
    def _login_page(notice: Html | None = None, status: int = 200) -> Response[str]:
        body = Html(
            (notice or "")
            + h("p", "Give the platform's API key (docllm status shows the file that holds it).")
            + form(
                LOGIN_PATH,
                field("API key", "key", kind="password", required=True, autocomplete="current-password"),
                csrf=None,
                submit="Sign in",
            )
        )
        return _html(status, layout("Sign in", body, active=""))

    @app.get(LOGIN_PATH, include_in_schema=False)
    def login_form() -> Response[str]:
        return _login_page()

    @app.post(LOGIN_PATH, include_in_schema=False)
    def login() -> Response[str]:
        p = build_platform()
        try:
            given = d.form().get("key", "").strip()
        except views.BadInput as e:
            return _login_page(message(str(e), kind="error"), 400)
        expected = api_key(p)
        if expected is None:
            return _redirect("/dashboard")  # this platform asks for no key
        if not d.same_origin() or not hmac.compare_digest(given.encode(), expected.encode()):
            return _login_page(message("That is not the platform's API key.", kind="error"), 401)
        return _redirect("/dashboard", **{"Set-Cookie": set_cookie_header(expected, secure=not p.local)})

    @app.post("/dashboard/logout", include_in_schema=False)
    def logout() -> Response[str]:
        return _redirect(LOGIN_PATH, **{"Set-Cookie": clear_cookie_header()})


__all__ = ["register"]
