"""A fake GitHub REST API, served over HTTP on 127.0.0.1, for tests that exercise the app's real client.

It authenticates like GitHub: /app endpoints want the app's JWT (RS256, checked against the app's
public key, with GitHub's limits on iat and exp); repository endpoints want an installation token it
issued, still valid, for an installation that can see the repository. Every request is recorded, and
failures can be queued (5xx, secondary and primary rate limits) to test retries, and answers lost
(the request carried out, then a 502) to test what the app does when it cannot know the result.

State lives in plain attributes that tests read directly: ``requests``, ``check_runs``, ``comments``,
``redelivery_attempts``. Check runs carry the app that made them (``app.id``) and comments their author
(the app's bot account when made with an installation token); tests seed other authors' runs and
comments with ``add_check_run`` and ``add_comment``, and delete comments as a user would with
``delete_comment``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web

DOCS_URL = "https://docs.github.com/rest"
# GitHub refuses app JWTs that are valid for more than ten minutes.
MAX_JWT_LIFETIME = 10 * 60
# The request's parsed JSON body, parsed once by the middleware for the recorder and the handlers.
JSON_BODY = web.RequestKey("json_body", object)
MAX_COMMENT_CHARS = 65536
PUBLIC_PATHS = ("/settings/apps/new", "/app-manifests/")
MANIFEST_CODE_TTL = timedelta(hours=1)
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
SECONDARY_LIMIT_MESSAGE = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message, "documentation_url": DOCS_URL}, status=status, headers=headers)


def missing_fields(resource: str, names: Iterable[str]) -> web.Response:
    errors = [{"resource": resource, "code": "missing_field", "field": name} for name in names]
    return web.json_response({"message": "Validation Failed", "errors": errors}, status=422)


def _json_object(request: web.Request) -> dict[str, Any]:
    body = request[JSON_BODY]
    return body if isinstance(body, dict) else {}


def _comment_too_long() -> web.Response:
    errors = [
        {
            "resource": "IssueComment",
            "code": "custom",
            "field": "body",
            "message": f"body is too long (maximum is {MAX_COMMENT_CHARS} characters)",
        }
    ]
    return web.json_response({"message": "Validation Failed", "errors": errors}, status=422)


def _git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    auth: str  # "jwt", "token" or "none": what the request presented, valid or not
    status: int
    at: float  # time.monotonic() when the request arrived


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: datetime
    revoked: bool = False


@dataclass
class _Failure:
    remaining: int
    respond: Callable[[], web.Response]
    path_prefix: str | None


@dataclass
class _LostAnswer:
    remaining: int
    method: str
    path_prefix: str | None
    status: int


@dataclass
class _Installation:
    id: int
    repositories: set[str] | None  # lower-case full names; None: all repositories


@dataclass
class _Repo:
    full_name: str
    default_branch: str
    id: int
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref -> path -> content
    compares: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pull_files: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    commit_pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reviews: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # PR -> review id -> review
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> the PR as the pulls API shows it


class FakeGitHub:
    def __init__(self, app_id: int, public_key_pem: str, *, bot_login: str = "bmad-marketplace-app[bot]") -> None:
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.bot_login = bot_login
        self.token_ttl = timedelta(hours=1)
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.reactions: dict[int, dict[str, Any]] = {}  # reaction id -> reaction, with its comment's id
        self.deliveries: list[dict[str, Any]] = []  # newest first, as GitHub serves them
        self.redelivery_attempts: list[int] = []
        self.tokens: dict[str, IssuedToken] = {}
        self._installations: dict[int, _Installation] = {}
        self._repos: dict[str, _Repo] = {}
        self._failures: list[_Failure] = []
        self._lost_answers: list[_LostAnswer] = []
        self._ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        # The manifest flow: apps created from a posted manifest, by the code GitHub hands back once.
        self.manifest_codes: dict[str, dict[str, Any]] = {}
        self.registered_apps: dict[int, dict[str, Any]] = {}
        # hold_writes(): writes wait here (a slow GitHub) until release_writes().
        self._writes_open = asyncio.Event()
        self._writes_open.set()
        self.writes_waiting = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/app/installations/{installation_id}/access_tokens", self._create_token)
        app.router.add_get("/app/hook/deliveries", self._list_deliveries)
        app.router.add_post("/app/hook/deliveries/{delivery_id}/attempts", self._redeliver)
        # The web host's manifest pages (a signed-in user's browser posts the form) and the API's
        # code conversion, which GitHub serves without authentication.
        app.router.add_post("/settings/apps/new", self._manifest_form)
        app.router.add_post("/organizations/{org}/settings/apps/new", self._manifest_form)
        app.router.add_post("/app-manifests/{code}/conversions", self._manifest_conversion)
        repo = "/repos/{owner}/{repo}"
        app.router.add_get(repo, self._get_repo)
        app.router.add_get(repo + "/contents/{path:.+}", self._get_contents)
        app.router.add_get(repo + "/compare/{basehead:.+}", self._compare)
        app.router.add_get(repo + "/pulls/{number:\\d+}/files", self._pull_files)
        app.router.add_get(repo + "/commits/{sha}/pulls", self._commit_pulls)
        app.router.add_get(repo + "/pulls/{number:\\d+}/reviews", self._pull_reviews)
        app.router.add_get(repo + "/commits/{ref}/check-runs", self._list_check_runs)
        app.router.add_post(repo + "/check-runs", self._create_check_run)
        app.router.add_patch(repo + "/check-runs/{id:\\d+}", self._update_check_run)
        app.router.add_get(repo + "/check-runs/{id:\\d+}", self._get_check_run)
        app.router.add_get(repo + "/issues/{number:\\d+}/comments", self._list_comments)
        app.router.add_post(repo + "/issues/{number:\\d+}/comments", self._create_comment)
        app.router.add_patch(repo + "/issues/comments/{id:\\d+}", self._update_comment)
        app.router.add_delete(repo + "/issues/comments/{id:\\d+}", self._delete_comment)
        app.router.add_get(repo + "/git/trees/{ref:.+}", self._get_tree)
        app.router.add_get(repo + "/pulls", self._list_pulls)
        app.router.add_get(repo + "/issues/comments/{id:\\d+}/reactions", self._list_reactions)
        app.router.add_post(repo + "/issues/comments/{id:\\d+}/reactions", self._create_reaction)
        app.router.add_delete(repo + "/issues/comments/{id:\\d+}/reactions/{reaction:\\d+}", self._delete_reaction)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- state set up by tests --------------------------------------------------------------------

    def add_installation(self, installation_id: int, repositories: Iterable[str] | None = None) -> None:
        """An installation of the app; ``repositories`` limits what its tokens can see (None: all)."""
        repos = None if repositories is None else {name.lower() for name in repositories}
        self._installations[installation_id] = _Installation(installation_id, repos)

    def add_repo(self, full_name: str, default_branch: str = "main") -> None:
        if full_name.lower() not in self._repos:
            self._repos[full_name.lower()] = _Repo(full_name, default_branch, next(self._ids))

    def _repo(self, full_name: str) -> _Repo:
        self.add_repo(full_name)
        return self._repos[full_name.lower()]

    def put_file(self, repo: str, ref: str, path: str, content: bytes) -> None:
        self._repo(repo).files.setdefault(ref, {})[path.strip("/")] = content

    def set_compare(
        self, repo: str, base: str, head: str, files: Sequence[dict[str, Any]], commits: Sequence[Any] = ()
    ) -> None:
        self._repo(repo).compares[(base, head)] = {"files": list(files), "commits": list(commits)}

    def set_pull_files(self, repo: str, number: int, files: Sequence[dict[str, Any]]) -> None:
        self._repo(repo).pull_files[number] = list(files)

    def set_commit_pulls(self, repo: str, sha: str, pulls: Sequence[dict[str, Any]]) -> None:
        self._repo(repo).commit_pulls[sha] = list(pulls)

    def set_pull(self, repo: str, pull: dict[str, Any]) -> None:
        """A pull request as `GET /repos/{repo}/pulls` lists it (open ones by default)."""
        self._repo(repo).pulls[int(pull["number"])] = dict(pull)

    def add_review(self, repo: str, number: int, review: dict[str, Any]) -> None:
        """A pull request review as GitHub keeps it (a dismissed review keeps its id, state `DISMISSED`)."""
        self._repo(repo).reviews.setdefault(number, {})[int(review["id"])] = {
            **review,
            "state": str(review.get("state", "")).upper(),
        }

    def add_delivery(
        self,
        guid: str | None = None,
        *,
        status_code: int = 200,
        delivered_at: datetime | None = None,
        event: str = "pull_request",
        action: str | None = "opened",
        installation_id: int | None = None,
        redelivery: bool = False,
    ) -> dict[str, Any]:
        """Add an entry to the app's delivery log. A status code outside 2xx is a failed delivery."""
        delivered = delivered_at or _now()
        entry = {
            "id": next(self._ids),
            "guid": guid or str(uuid.uuid4()),
            "delivered_at": _iso(delivered),
            "redelivery": redelivery,
            "duration": 0.05,
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code,
            "event": event,
            "action": action,
            "installation_id": installation_id,
            "repository_id": None,
            "throttled_at": None,
        }
        self.deliveries.append(entry)
        self.deliveries.sort(key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
        return entry

    def app_identity(self, app_id: int | None = None) -> dict[str, Any]:
        """The ``app`` object GitHub puts on check runs (and ``performed_via_github_app`` on comments)."""
        if app_id is None or app_id == self.app_id:
            slug = self.bot_login.removesuffix("[bot]")
            return {"id": self.app_id, "slug": slug, "name": slug}
        return {"id": app_id, "slug": f"app-{app_id}", "name": f"App {app_id}"}

    def add_check_run(
        self, repo: str, head_sha: str, name: str, *, app_id: int | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A check run already on GitHub: by default the app's own (as if created by a request whose
        answer was lost), or another app's with ``app_id``."""
        full_name = self._repo(repo).full_name
        run_id = next(self._ids)
        run = self._new_check_run(run_id, full_name, name, head_sha, app_id)
        self._apply_check_run(run, fields)
        self.check_runs[run_id] = run
        return run

    def add_comment(
        self, repo: str, number: int, body: str, user_login: str, user_type: str = "User", user_id: int | None = None
    ) -> dict[str, Any]:
        """A comment on issue or pull request ``number`` written by someone else (a person, another bot)."""
        full_name = self._repo(repo).full_name
        user: dict[str, Any] = {"login": user_login, "type": user_type}
        if user_id is not None:
            user["id"] = user_id
        comment = self._new_comment(next(self._ids), full_name, number, body, user, None)
        self.comments[comment["id"]] = comment
        return comment

    def delete_comment(self, comment_id: int) -> None:
        """What a user deleting the comment in GitHub's interface does."""
        del self.comments[comment_id]

    def hold_writes(self) -> None:
        """Every POST and PATCH but token requests waits, answered only once `release_writes` is called
        (a slow GitHub)."""
        self._writes_open.clear()

    def release_writes(self) -> None:
        self._writes_open.set()

    def revoke_tokens(self) -> None:
        for issued in self.tokens.values():
            issued.revoked = True

    # --- failure injection ------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, *, path: str | None = None) -> None:
        """Answer the next ``n`` requests (whose path starts with ``path``, if given) with ``status``."""
        self._failures.append(_Failure(n, lambda: error(status, "Server Error"), path))

    def rate_limit_next(
        self, n: int, retry_after: int | None = 1, *, status: int = 403, path: str | None = None
    ) -> None:
        """Answer the next ``n`` requests as a secondary rate limit, with Retry-After unless None."""
        headers = {"x-ratelimit-remaining": "4000"}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        self._failures.append(_Failure(n, lambda: error(status, SECONDARY_LIMIT_MESSAGE, dict(headers)), path))

    def primary_limit_next(self, n: int, reset_in: float = 1, *, path: str | None = None) -> None:
        """Answer the next ``n`` requests as an exhausted primary limit that resets ``reset_in`` s later."""

        def respond() -> web.Response:
            reset = math.ceil(time.time() + reset_in)
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            return error(403, "API rate limit exceeded for installation.", headers)

        self._failures.append(_Failure(n, respond, path))

    def lose_answer_next(self, n: int, *, method: str = "POST", path: str | None = None, status: int = 502) -> None:
        """Carry out the next ``n`` ``method`` requests (whose path starts with ``path``, if given), then
        answer ``status`` instead of the result: GitHub documents that a 5xx to a POST may still have
        created the object."""
        self._lost_answers.append(_LostAnswer(n, method.upper(), path, status))

    def _lost_answer(self, method: str, path: str) -> web.Response | None:
        for lost in self._lost_answers:
            if lost.method == method and (lost.path_prefix is None or path.startswith(lost.path_prefix)):
                lost.remaining -= 1
                if lost.remaining <= 0:
                    self._lost_answers.remove(lost)
                return error(lost.status, "Server Error")
        return None

    def _injected_failure(self, path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.path_prefix is None or path.startswith(failure.path_prefix):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.respond()
        return None

    # --- views over the recorded requests --------------------------------------------------------

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/access_tokens")]

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def write_requests(self) -> list[RecordedRequest]:
        """Mutating requests to repositories, in arrival order (``at`` is when each arrived)."""
        return [
            r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE") and r.path.startswith("/repos/")
        ]

    # --- authentication ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        arrived = time.monotonic()
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        request[JSON_BODY] = body
        if request.path.startswith(PUBLIC_PATHS) or request.path.endswith("/settings/apps/new"):
            response = await handler(request)
            self.requests.append(
                RecordedRequest(
                    request.method, request.path, dict(request.query), body, "none", response.status, arrived
                )
            )
            return response
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if not credential:
            auth = "none"
        elif scheme.lower() == "token" or credential in self.tokens:
            auth = "token"
        else:
            auth = "jwt"

        held = request.method in ("POST", "PATCH") and not request.path.endswith("/access_tokens")
        if held and not self._writes_open.is_set():
            self.writes_waiting += 1
            try:
                await self._writes_open.wait()
            finally:
                self.writes_waiting -= 1
        response = self._injected_failure(request.path)
        if response is None:
            response = self._authenticate(request, auth, credential)
        if response is None:
            if isinstance(body, bytes):
                response = error(400, "Problems parsing JSON")
            else:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = error(exc.status, exc.reason)
                if response.status < 400:
                    response = self._lost_answer(request.method, request.path) or response
        response.headers.setdefault("x-ratelimit-limit", "5000")
        response.headers.setdefault("x-ratelimit-remaining", "4999")
        response.headers.setdefault("x-ratelimit-reset", str(int(time.time()) + 3600))
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=body,
                auth=auth,
                status=response.status,
                at=arrived,
            )
        )
        return response

    def _authenticate(self, request: web.Request, auth: str, credential: str) -> web.Response | None:
        if not request.headers.get("User-Agent"):
            return error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.",
            )
        if request.path.startswith("/app"):
            if auth != "jwt":
                return error(401, "A JSON web token could not be decoded")
            return self._check_jwt(credential)
        if auth != "token":
            return error(401, "Bad credentials")
        issued = self.tokens.get(credential)
        if issued is None or issued.revoked or issued.expires_at <= _now():
            return error(401, "Bad credentials")
        owner, name = request.match_info.get("owner"), request.match_info.get("repo")
        if owner is not None and name is not None:
            full_name = f"{owner}/{name}".lower()
            scope = self._installations[issued.installation_id].repositories
            # GitHub hides repositories a token cannot see behind a 404, not a 403.
            if full_name not in self._repos or (scope is not None and full_name not in scope):
                return error(404, "Not Found")
        return None

    def _check_jwt(self, token: str) -> web.Response | None:
        try:
            claims = jwt.decode(
                token,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            return error(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time "
                "at which the assertion expires",
            )
        except jwt.PyJWTError:
            return error(401, "A JSON web token could not be decoded")
        now = time.time()
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or iat > now:
            return error(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past")
        if exp - iat > MAX_JWT_LIFETIME or exp > now + MAX_JWT_LIFETIME:
            return error(401, "'Expiration time' claim ('exp') is too far in the future")
        if str(claims["iss"]) != str(self.app_id):
            return error(401, "'Issuer' claim ('iss') must be the app's id or client id")
        return None

    # --- /app --------------------------------------------------------------------------------------

    async def _create_token(self, request: web.Request) -> web.Response:
        installation_id = int(request.match_info["installation_id"])
        installation = self._installations.get(installation_id)
        if installation is None:
            return error(404, "Not Found")
        # Long and variable, like GitHub's newer token format: nothing may assume 40 characters.
        token = f"ghs_{secrets.token_urlsafe(96)}"
        expires_at = _now() + self.token_ttl
        self.tokens[token] = IssuedToken(token, installation_id, expires_at)
        return web.json_response(
            {
                "token": token,
                "expires_at": _iso(expires_at),
                "permissions": {"checks": "write", "contents": "read", "pull_requests": "write"},
                "repository_selection": "all" if installation.repositories is None else "selected",
            },
            status=201,
        )

    async def _list_deliveries(self, request: web.Request) -> web.Response:
        per_page = min(int(request.query.get("per_page", "30")), 100)
        start = 0
        cursor = request.query.get("cursor")
        if cursor is not None:
            ids = [entry["id"] for entry in self.deliveries]
            try:
                start = ids.index(int(cursor.removeprefix("v1_")))
            except ValueError:
                return error(422, "Invalid cursor")
        page = self.deliveries[start : start + per_page]
        headers = {}
        if start + per_page < len(self.deliveries):
            cursor = f"v1_{self.deliveries[start + per_page]['id']}"
            query = urlencode({"per_page": per_page, "cursor": cursor})
            headers["Link"] = f'<{self.url}/app/hook/deliveries?{query}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _redeliver(self, request: web.Request) -> web.Response:
        delivery_id = int(request.match_info["delivery_id"])
        if not any(entry["id"] == delivery_id for entry in self.deliveries):
            return error(404, "Not Found")
        self.redelivery_attempts.append(delivery_id)
        return web.json_response({}, status=202)

    # --- the manifest flow ------------------------------------------------------------------------

    async def _manifest_form(self, request: web.Request) -> web.Response:
        """What GitHub does once the signed-in user confirms the posted manifest: create the app and
        send the browser to the manifest's redirect_url with a one-time code and the caller's state."""
        form = await request.post()
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            return web.Response(status=422, text="Invalid GitHub App configuration: manifest is not JSON")
        if not isinstance(manifest, dict):
            return web.Response(status=422, text="Invalid GitHub App configuration: manifest is not an object")
        problems = [name for name in ("name", "url") if not manifest.get(name)]
        hook = manifest.get("hook_attributes") or {}
        if hook.get("active", True) and not hook.get("url"):
            problems.append("hook_attributes.url")
        taken = {a["name"].lower() for a in self.registered_apps.values()}
        if str(manifest.get("name", "")).lower() in taken:
            problems.append("name (already taken)")
        if problems:
            return web.Response(status=422, text="Invalid GitHub App configuration: " + ", ".join(problems))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        app_id = next(self._ids)
        owner = request.match_info.get("org") or "octo-user"
        slug = "-".join(str(manifest["name"]).lower().split())
        code = secrets.token_hex(20)
        self.manifest_codes[code] = {
            "created_at": _now(),
            "app": {
                "id": app_id,
                "slug": slug,
                "node_id": f"A_{app_id}",
                "owner": {"login": owner, "type": "Organization" if request.match_info.get("org") else "User"},
                "name": manifest["name"],
                "description": manifest.get("description", ""),
                "external_url": manifest["url"],
                "html_url": f"{self.url}/apps/{slug}",
                "permissions": manifest.get("default_permissions", {}),
                "events": manifest.get("default_events", []),
                "hook_attributes": hook,
                "client_id": f"Iv1.{secrets.token_hex(8)}",
                "client_secret": secrets.token_hex(20),
                "webhook_secret": secrets.token_hex(20) if hook.get("active", True) else None,
                "pem": key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                ).decode(),
            },
            "public_pem": key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode(),
        }
        redirect = str(manifest.get("redirect_url") or "")
        if not redirect:
            return web.Response(text=f"App created: {self.url}/apps/{slug}")
        query = urlencode({"code": code, **({"state": request.query["state"]} if "state" in request.query else {})})
        raise web.HTTPFound(f"{redirect}{'&' if '?' in redirect else '?'}{query}")

    async def _manifest_conversion(self, request: web.Request) -> web.Response:
        entry = self.manifest_codes.pop(request.match_info["code"], None)
        if entry is None or entry["created_at"] + MANIFEST_CODE_TTL < _now():
            return error(404, "Not Found")
        app = entry["app"]
        self.registered_apps[app["id"]] = {**app, "public_pem": entry["public_pem"]}
        return web.json_response(app, status=201)

    # --- /repos -----------------------------------------------------------------------------------

    def _repo_of(self, request: web.Request) -> _Repo:
        return self._repos[f"{request.match_info['owner']}/{request.match_info['repo']}".lower()]

    def _paginate(self, request: web.Request, items: list[Any]) -> web.Response:
        per_page = min(int(request.query.get("per_page", "30")), 100)
        page = max(int(request.query.get("page", "1")), 1)
        headers = {}
        if page * per_page < len(items):
            extra = {k: v for k, v in request.query.items() if k not in ("per_page", "page")}
            query = urlencode({**extra, "per_page": per_page, "page": page + 1})
            headers["Link"] = f'<{self.url}{request.path}?{query}>; rel="next"'
        return web.json_response(items[(page - 1) * per_page : page * per_page], headers=headers)

    async def _get_repo(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request)
        owner = repo.full_name.split("/")[0]
        return web.json_response(
            {
                "id": repo.id,
                "name": repo.full_name.split("/")[1],
                "full_name": repo.full_name,
                "owner": {"login": owner},
                "private": True,
                "default_branch": repo.default_branch,
            }
        )

    async def _get_contents(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request)
        ref = request.query.get("ref") or repo.default_branch
        tree = repo.files.get(ref)
        if tree is None:
            return error(404, f"No commit found for the ref {ref}")
        path = request.match_info["path"].strip("/")
        if path in tree:
            content = tree[path]
            encoded = base64.encodebytes(content).decode("ascii")  # GitHub wraps the base64 too
            return web.json_response(
                {
                    "type": "file",
                    "encoding": "base64",
                    "size": len(content),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "sha": _git_blob_sha(content),
                    "content": encoded,
                }
            )
        entries: dict[str, dict[str, Any]] = {}
        for file_path, content in tree.items():
            if file_path.startswith(path + "/"):
                child = file_path[len(path) + 1 :].split("/", 1)
                kind = "dir" if len(child) > 1 else "file"
                entries[child[0]] = {
                    "type": kind,
                    "name": child[0],
                    "path": f"{path}/{child[0]}",
                    "size": len(content) if kind == "file" else 0,
                    "sha": _git_blob_sha(content) if kind == "file" else None,
                }
        if not entries:
            return error(404, "Not Found")
        return web.json_response([entries[name] for name in sorted(entries)])

    async def _compare(self, request: web.Request) -> web.Response:
        base, dots, head = request.match_info["basehead"].partition("...")
        found = self._repo_of(request).compares.get((base, head)) if dots else None
        if found is None:
            return error(404, "Not Found")
        return web.json_response(
            {
                "status": "ahead",
                "ahead_by": len(found["commits"]),
                "behind_by": 0,
                "total_commits": len(found["commits"]),
                "base_commit": {"sha": base},
                "merge_base_commit": {"sha": base},
                "commits": found["commits"],
                "files": found["files"],
            }
        )

    async def _pull_files(self, request: web.Request) -> web.Response:
        # Every PR the tests speak of exists; one whose files were not seeded changed none we look at.
        files = self._repo_of(request).pull_files.get(int(request.match_info["number"]), [])
        return self._paginate(request, files)

    async def _commit_pulls(self, request: web.Request) -> web.Response:
        return web.json_response(self._repo_of(request).commit_pulls.get(request.match_info["sha"], []))

    async def _pull_reviews(self, request: web.Request) -> web.Response:
        reviews = self._repo_of(request).reviews.get(int(request.match_info["number"]), {})
        return self._paginate(request, [reviews[i] for i in sorted(reviews)])

    async def _create_check_run(self, request: web.Request) -> web.Response:
        body = _json_object(request)
        missing = [name for name in ("name", "head_sha") if not body.get(name)]
        if missing:
            return missing_fields("CheckRun", missing)
        problem = self._check_output(body)
        if problem is not None:
            return problem
        run_id = next(self._ids)
        full_name = self._repo_of(request).full_name
        run = self._new_check_run(run_id, full_name, body["name"], body["head_sha"], None)
        self._apply_check_run(run, body)
        self.check_runs[run_id] = run
        return web.json_response(run, status=201)

    def _new_check_run(
        self, run_id: int, full_name: str, name: str, head_sha: str, app_id: int | None
    ) -> dict[str, Any]:
        return {
            "id": run_id,
            "repository": full_name,
            "name": name,
            "head_sha": head_sha,
            "status": "queued",
            "conclusion": None,
            "details_url": None,
            "external_id": None,
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
            "annotations": [],
            "pull_requests": [],
            "app": self.app_identity(app_id),
            "html_url": f"https://github.com/{full_name}/runs/{run_id}",
        }

    async def _list_check_runs(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request).full_name.lower()
        query = request.query
        runs = [
            run
            for run in self.check_runs.values()
            if run["repository"].lower() == repo
            and run["head_sha"] == request.match_info["ref"]
            and ("check_name" not in query or run["name"] == query["check_name"])
            and ("status" not in query or run["status"] == query["status"])
            and ("app_id" not in query or str(run["app"]["id"]) == query["app_id"])
        ]
        if query.get("filter", "latest") == "latest":
            # GitHub's default: only the most recent run of each name per app.
            latest: dict[tuple[int, str], dict[str, Any]] = {}
            for run in runs:
                key = (run["app"]["id"], run["name"])
                if key not in latest or run["id"] > latest[key]["id"]:
                    latest[key] = run
            runs = list(latest.values())
        runs.sort(key=lambda run: run["id"], reverse=True)
        per_page = min(int(query.get("per_page", "30")), 100)
        page = max(int(query.get("page", "1")), 1)
        return web.json_response(
            {"total_count": len(runs), "check_runs": runs[(page - 1) * per_page : page * per_page]}
        )

    async def _get_check_run(self, request: web.Request) -> web.Response:
        run = self.check_runs.get(int(request.match_info["id"]))
        if run is None or run["repository"].lower() != self._repo_of(request).full_name.lower():
            return error(404, "Not Found")
        return web.json_response(run)

    async def _update_check_run(self, request: web.Request) -> web.Response:
        run = self.check_runs.get(int(request.match_info["id"]))
        if run is None or run["repository"].lower() != self._repo_of(request).full_name.lower():
            return error(404, "Not Found")
        body = _json_object(request)
        if run["status"] == "completed" and body.get("status") in ("queued", "in_progress"):
            # GitHub keeps a completed run completed: a new state needs a new run.
            return error(422, "A completed check run cannot be set back to in progress")
        problem = self._check_output(body)
        if problem is not None:
            return problem
        self._apply_check_run(run, body)
        return web.json_response(run)

    @staticmethod
    def _check_output(body: dict[str, Any]) -> web.Response | None:
        output = body.get("output") or {}
        if len(output.get("annotations") or []) > 50:
            return error(422, "Only 50 annotations are allowed per request")
        for key in ("summary", "text"):
            # GitHub counts bytes here, whatever its documentation says about characters.
            if len((output.get(key) or "").encode("utf-8")) > 65535:
                return web.json_response(
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "CheckRun",
                                "code": "custom",
                                "field": key,
                                "message": f"{key} exceeds a maximum bytesize of 65535",
                            }
                        ],
                    },
                    status=422,
                )
        return None

    @staticmethod
    def _apply_check_run(run: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "details_url", "external_id", "status", "started_at"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion"):
            run["conclusion"] = body["conclusion"]
            run["status"] = "completed"
            run["completed_at"] = body.get("completed_at") or _iso(_now())
        output = body.get("output")
        if output:
            for key in ("title", "summary", "text"):
                if key in output:
                    run["output"][key] = output[key]
            # GitHub appends annotations across updates instead of replacing them.
            run["annotations"].extend(output.get("annotations") or [])
            run["output"]["annotations_count"] = len(run["annotations"])

    async def _list_comments(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request).full_name.lower()
        number = int(request.match_info["number"])
        since = request.query.get("since")
        if since is not None:
            try:
                moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                return error(422, f"Invalid value for 'since': {since}")
        found = [
            comment
            for comment in self.comments.values()
            if comment["repository"].lower() == repo
            and comment["issue_number"] == number
            # GitHub: only comments updated at or after `since`.
            and (since is None or datetime.fromisoformat(comment["updated_at"].replace("Z", "+00:00")) >= moment)
        ]
        found.sort(key=lambda comment: comment["id"])
        return self._paginate(request, found)

    async def _create_comment(self, request: web.Request) -> web.Response:
        body = _json_object(request)
        if not body.get("body"):
            return missing_fields("IssueComment", ["body"])
        if len(body["body"]) > MAX_COMMENT_CHARS:
            return _comment_too_long()
        repo = self._repo_of(request).full_name
        number = int(request.match_info["number"])
        comment = self._new_comment(
            next(self._ids), repo, number, body["body"], {"login": self.bot_login, "type": "Bot"}, self.app_identity()
        )
        self.comments[comment["id"]] = comment
        return web.json_response(comment, status=201)

    @staticmethod
    def _new_comment(
        comment_id: int,
        repo: str,
        number: int,
        body: str,
        user: dict[str, Any],
        via_app: dict[str, Any] | None,
    ) -> dict[str, Any]:
        stamp = _iso(_now())
        return {
            "id": comment_id,
            "repository": repo,
            "issue_number": number,
            "body": body,
            "user": user,
            "performed_via_github_app": via_app,
            "created_at": stamp,
            "updated_at": stamp,
            "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{comment_id}",
        }

    async def _delete_comment(self, request: web.Request) -> web.Response:
        comment = self.comments.get(int(request.match_info["id"]))
        if comment is None or comment["repository"].lower() != self._repo_of(request).full_name.lower():
            return error(404, "Not Found")
        del self.comments[comment["id"]]
        return web.Response(status=204)

    async def _get_tree(self, request: web.Request) -> web.Response:
        """`git/trees/{ref}?recursive=1`: the files put at `ref`, as blobs (sub-folders as trees)."""
        repo = self._repo_of(request)
        files = repo.files.get(request.match_info["ref"])
        if files is None:
            return error(404, "Not Found")
        recursive = request.query.get("recursive") not in (None, "", "0", "false")
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, content in sorted(files.items()):
            parts = path.split("/")
            if not recursive and len(parts) > 1:
                folders.add(parts[0])
                continue
            for depth in range(1, len(parts)):
                folders.add("/".join(parts[:depth]))
            entries.append(
                {"path": path, "mode": "100644", "type": "blob", "sha": _git_blob_sha(content), "size": len(content)}
            )
        entries += [{"path": folder, "mode": "040000", "type": "tree", "sha": "0" * 40} for folder in sorted(folders)]
        return web.json_response({"sha": "f" * 40, "tree": entries, "truncated": False})

    async def _list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request)
        state = request.query.get("state", "open")
        pulls = [p for _, p in sorted(repo.pulls.items()) if state == "all" or p.get("state", "open") == state]
        return self._paginate(request, pulls)

    def reactions_on(self, comment_id: int) -> list[str]:
        """The contents of the reactions on a comment, oldest first."""
        ordered = sorted(self.reactions.values(), key=lambda r: r["id"])
        return [r["content"] for r in ordered if r["comment_id"] == comment_id]

    def _comment_of(self, request: web.Request) -> dict[str, Any] | None:
        comment = self.comments.get(int(request.match_info["id"]))
        if comment is None or comment["repository"].lower() != self._repo_of(request).full_name.lower():
            return None
        return comment

    async def _list_reactions(self, request: web.Request) -> web.Response:
        comment = self._comment_of(request)
        if comment is None:
            return error(404, "Not Found")
        found = [r for r in self.reactions.values() if r["comment_id"] == comment["id"]]
        found.sort(key=lambda r: r["id"])
        return self._paginate(request, [{k: v for k, v in r.items() if k != "comment_id"} for r in found])

    async def _create_reaction(self, request: web.Request) -> web.Response:
        comment = self._comment_of(request)
        if comment is None:
            return error(404, "Not Found")
        content = _json_object(request).get("content")
        if content not in REACTIONS:
            return missing_fields("Reaction", ["content"]) if content is None else error(422, "Validation Failed")
        user = {"login": self.bot_login, "type": "Bot", "id": self.app_id + 1_000_000}
        for reaction in self.reactions.values():
            # GitHub answers 200 with the reaction that exists: one per user and content.
            if reaction["comment_id"] == comment["id"] and reaction["content"] == content and reaction["user"] == user:
                return web.json_response({k: v for k, v in reaction.items() if k != "comment_id"}, status=200)
        reaction = {
            "id": next(self._ids),
            "node_id": "REA_x",
            "user": user,
            "content": content,
            "created_at": _iso(_now()),
            "comment_id": comment["id"],
        }
        self.reactions[reaction["id"]] = reaction
        return web.json_response({k: v for k, v in reaction.items() if k != "comment_id"}, status=201)

    async def _delete_reaction(self, request: web.Request) -> web.Response:
        comment = self._comment_of(request)
        reaction = self.reactions.get(int(request.match_info["reaction"]))
        if comment is None or reaction is None or reaction["comment_id"] != comment["id"]:
            return error(404, "Not Found")
        if reaction["user"].get("login") != self.bot_login:
            return error(403, "Must have admin rights to Repository.")
        del self.reactions[reaction["id"]]
        return web.Response(status=204)

    async def _update_comment(self, request: web.Request) -> web.Response:
        comment = self.comments.get(int(request.match_info["id"]))
        if comment is None or comment["repository"].lower() != self._repo_of(request).full_name.lower():
            return error(404, "Not Found")
        body = _json_object(request)
        if not body.get("body"):
            return missing_fields("IssueComment", ["body"])
        if len(body["body"]) > MAX_COMMENT_CHARS:
            return _comment_too_long()
        comment["body"] = body["body"]
        comment["updated_at"] = _iso(_now())
        return web.json_response(comment)
