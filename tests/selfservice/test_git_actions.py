"""repo.create and pipeline.create: real git on the local provider, recorded API behaviour for
GitHub, GitLab and Gitea through httpx.MockTransport."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml
from pydantic import ValidationError

from lamplighter.core.crypto import SecretBox
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions import git as git_module
from lamplighter.selfservice.actions import git_hosts
from lamplighter.selfservice.actions.base import ACTIONS, ActionError, StepContext
from lamplighter.selfservice.actions.git import RepoCreate, RepoCreateInput
from lamplighter.selfservice.actions.pipeline import PipelineCreate, PipelineCreateInput
from tests.conftest import SYSTEM, TEST_SECRET


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", secret_key=TEST_SECRET, **extra)


def make_ctx(settings: Settings, *, run_id: int = 1, step_id: str = "repo") -> StepContext:
    return StepContext(
        session=None,  # type: ignore[arg-type]  # these actions write no rows
        settings=settings,
        box=SecretBox(TEST_SECRET.encode()),
        actor=SYSTEM,
        run_id=run_id,
        step_id=step_id,
        requesting_team_id=None,
    )


def repo_input(**overrides: Any) -> RepoCreateInput:
    values: dict[str, Any] = {
        "name": "payments-api",
        "description": "Takes payments",
        "owner": "team-payments",
    }
    values.update(overrides)
    return RepoCreateInput(**values)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(url: str, target: Path) -> Path:
    git("clone", "-q", url, str(target))
    return target


# -- local provider ---------------------------------------------------------------------------
def test_actions_are_registered() -> None:
    assert ACTIONS["repo.create"] is RepoCreate
    assert ACTIONS["pipeline.create"] is PipelineCreate


def test_local_repo_clones_with_the_rendered_service(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    output = RepoCreate().run(make_ctx(settings), repo_input(data={"python_version": "3.11"}))

    assert output.clone_url == str((tmp_path / "data" / "git" / "payments-api.git").resolve())
    assert output.web_url is None and output.default_branch == "main"
    work = clone(output.clone_url, tmp_path / "clone")
    assert git("rev-parse", "HEAD", cwd=work) == output.commit
    assert "# payments-api" in (work / "README.md").read_text()
    assert "Takes payments" in (work / "README.md").read_text()
    catalog = yaml.safe_load((work / "catalog-info.yaml").read_text())
    assert catalog["kind"] == "Component"
    assert catalog["metadata"]["name"] == "payments-api"
    assert catalog["spec"]["owner"] == "group:team-payments"
    assert catalog["spec"]["lifecycle"] == "experimental"
    assert 'requires-python = ">=3.11"' in (work / "pyproject.toml").read_text()
    assert (work / ".lamplighter-run").read_text().strip() == "run-1-repo"
    assert (work / "tests" / "test_healthz.py").is_file()

    # The rendered app answers /healthz.
    spec = importlib.util.spec_from_file_location("rendered_app", work / "src/payments_api/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statuses: list[str] = []
    body = b"".join(module.app({"PATH_INFO": "/healthz"}, lambda s, h: statuses.append(s)))
    assert statuses == ["200 OK"]
    assert json.loads(body) == {"status": "ok", "service": "payments-api"}


def test_second_attempt_of_the_step_returns_the_same_repository(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = RepoCreate().run(make_ctx(settings), repo_input())
    second = RepoCreate().run(make_ctx(settings), repo_input())

    assert second == first
    assert sorted(p.name for p in (tmp_path / "data" / "git").iterdir()) == ["payments-api.git"]
    assert git("--git-dir", first.clone_url, "rev-list", "--count", "HEAD") == "1"


def test_taken_name_is_refused_and_left_alone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = RepoCreate().run(make_ctx(settings, run_id=1), repo_input())
    other_run = make_ctx(settings, run_id=2)

    with pytest.raises(ActionError) as caught:
        RepoCreate().run(other_run, repo_input(description="another one"))
    assert caught.value.field == "name" and not caught.value.retryable
    assert "already exists" in str(caught.value)

    RepoCreate().compensate(other_run, repo_input(), None)  # must not delete the first run's repo
    assert git("--git-dir", first.clone_url, "rev-parse", "HEAD") == first.commit
    assert sorted(p.name for p in (tmp_path / "data" / "git").iterdir()) == ["payments-api.git"]


def test_repository_made_by_hand_is_refused_and_never_deleted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    by_hand = tmp_path / "data" / "git" / "legacy.git"
    by_hand.parent.mkdir(parents=True)
    git("init", "-q", "--bare", str(by_hand))
    ctx = make_ctx(settings)

    with pytest.raises(ActionError) as caught:
        RepoCreate().run(ctx, repo_input(name="legacy"))
    assert caught.value.field == "name"
    RepoCreate().compensate(ctx, repo_input(name="legacy"), None)
    assert (by_hand / "HEAD").is_file()


def test_compensate_deletes_the_repository(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ctx = make_ctx(settings)
    output = RepoCreate().run(ctx, repo_input())

    RepoCreate().compensate(ctx, repo_input(), output)
    assert not Path(output.clone_url).exists()
    RepoCreate().compensate(ctx, repo_input(), output)  # nothing left: still fine
    with pytest.raises(subprocess.CalledProcessError):
        clone(output.clone_url, tmp_path / "clone")


@pytest.mark.parametrize("template", ["..", "../actions", "/etc", "no-such-skeleton", "../../.."])
def test_template_outside_the_skeletons_is_refused(tmp_path: Path, template: str) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(make_ctx(settings), repo_input(template=template))
    assert caught.value.field == "template"
    assert not (tmp_path / "data" / "git" / "payments-api.git").exists()


def test_skeleton_with_tasks_is_refused_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skeletons = tmp_path / "skeletons"
    (skeletons / "evil").mkdir(parents=True)
    proof = tmp_path / "pwned"
    (skeletons / "evil" / "copier.yml").write_text(
        f"name:\n  type: str\n_tasks:\n  - touch {proof}\n"
    )
    (skeletons / "evil" / "README.md.jinja").write_text("{{ name }}\n")
    monkeypatch.setattr(git_module, "SKELETONS_DIR", skeletons)

    with pytest.raises(ActionError) as caught:
        RepoCreate().run(make_ctx(make_settings(tmp_path)), repo_input(template="evil"))
    assert caught.value.field == "template"
    assert not proof.exists()
    assert not (tmp_path / "data" / "git" / "payments-api.git").exists()


@pytest.mark.parametrize("name", ["Payments", "-api", "a/b", "../x", "a" * 64, ""])
def test_repository_name_must_be_a_slug(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        repo_input(name=name)
    assert caught.value.errors()[0]["loc"] == ("name",)


def test_answers_the_skeleton_refuses_are_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(
            make_ctx(make_settings(tmp_path)), repo_input(data={"python_version": "2.7"})
        )
    assert caught.value.field == "data"
    assert not (tmp_path / "data" / "git" / "payments-api.git").exists()
    with pytest.raises(ValidationError):
        repo_input(data={"_src_path": "/etc"})


def test_runs_racing_for_one_name_create_it_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    def attempt(run_id: int) -> str:
        try:
            RepoCreate().run(make_ctx(settings, run_id=run_id), repo_input())
        except ActionError as exc:
            return f"refused:{exc.field}"
        return "created"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = sorted(pool.map(attempt, range(1, 5)))

    assert results == ["created"] + ["refused:name"] * 3
    assert [p.name for p in (tmp_path / "data" / "git").iterdir()] == ["payments-api.git"]


# -- pipeline.create ---------------------------------------------------------------------------
def test_pipeline_is_committed_as_valid_github_actions_yaml(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    repo = RepoCreate().run(make_ctx(settings), repo_input())
    ctx = make_ctx(settings, step_id="ci")
    data = PipelineCreateInput(
        clone_url=repo.clone_url, python_version="3.12", test_command="python -m pytest -q"
    )

    output = PipelineCreate().run(ctx, data)

    assert output.path == ".github/workflows/ci.yml" and output.commit != repo.commit
    work = clone(repo.clone_url, tmp_path / "clone")
    assert git("rev-parse", "HEAD", cwd=work) == output.commit
    assert git("log", "-1", "--format=%an <%ae>", cwd=work) == "Lamplighter <lamplighter@localhost>"
    text = (work / ".github/workflows/ci.yml").read_text()
    workflow = yaml.safe_load(text)
    steps = workflow["jobs"]["test"]["steps"]
    assert {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}} in steps
    assert {"run": "python -m pytest -q"} in steps
    assert "release gate" in text.lower()  # the placeholder for the release-gates issue
    assert (work / "README.md").is_file()  # the skeleton is still there


def test_pipeline_gitlab_flavour_and_idempotency(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    repo = RepoCreate().run(make_ctx(settings), repo_input())
    ctx = make_ctx(settings, step_id="ci")
    data = PipelineCreateInput(clone_url=repo.clone_url, flavour="gitlab-ci", python_version="3.11")

    first = PipelineCreate().run(ctx, data)
    second = PipelineCreate().run(ctx, data)

    assert second == first
    assert git("--git-dir", repo.clone_url, "rev-list", "--count", "HEAD") == "2"
    work = clone(repo.clone_url, tmp_path / "clone")
    pipeline = yaml.safe_load((work / ".gitlab-ci.yml").read_text())
    assert pipeline["test"]["image"] == "python:3.11"
    assert "python -m pytest" in pipeline["test"]["script"]


def test_pipeline_compensate_removes_the_file_in_a_new_commit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    repo = RepoCreate().run(make_ctx(settings), repo_input())
    ctx = make_ctx(settings, step_id="ci")
    data = PipelineCreateInput(clone_url=repo.clone_url)
    output = PipelineCreate().run(ctx, data)

    PipelineCreate().compensate(ctx, data, output)
    PipelineCreate().compensate(ctx, data, output)  # already undone: no second commit

    work = clone(repo.clone_url, tmp_path / "clone")
    assert not (work / ".github/workflows/ci.yml").exists()
    assert (work / "README.md").is_file()
    assert git("rev-list", "--count", "HEAD", cwd=work) == "3"


def test_pipeline_refuses_repositories_outside_the_data_directory(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    outside = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(outside))
    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(make_ctx(settings), PipelineCreateInput(clone_url=str(outside)))
    assert caught.value.field == "clone_url"
    assert git("--git-dir", str(outside), "rev-list", "--all") == ""


# -- hosted providers ---------------------------------------------------------------------------
class FakeHost:
    """Just enough of a GitHub, GitLab or Gitea API, replying like the real one."""

    def __init__(
        self, provider: str, *, fail: Callable[[httpx.Request], httpx.Response | None] | None = None
    ) -> None:
        self.provider = provider
        self.repos: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.requests: list[httpx.Request] = []
        self.fail = fail

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def factory(base_url: str, headers: dict[str, str]) -> httpx.Client:
            return httpx.Client(
                base_url=base_url, headers=headers, transport=httpx.MockTransport(self.handle)
            )

        monkeypatch.setattr(git_hosts, "client_factory", factory)

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None and (reply := self.fail(request)) is not None:
            return reply
        route: Callable[[httpx.Request, str], httpx.Response] = getattr(self, self.provider)
        return route(request, request.url.raw_path.decode().split("?")[0])

    def _repo(self, name: str, description: str) -> dict[str, Any]:
        return {
            "id": len(self.repos) + 101,
            "name": name,
            "path": name,
            "full_name": f"acme/{name}",
            "description": description,
            "clone_url": f"https://git.example.com/acme/{name}.git",
            "http_url_to_repo": f"https://git.example.com/acme/{name}.git",
            "html_url": f"https://git.example.com/acme/{name}",
            "web_url": f"https://git.example.com/acme/{name}",
            "default_branch": "main",
            "empty": True,
        }

    def github(self, request: httpx.Request, path: str) -> httpx.Response:
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/api/v3/orgs/acme/repos":
            body = json.loads(request.content)
            if body["name"] in self.repos:
                return httpx.Response(
                    422,
                    json={
                        "message": "Repository creation failed.",
                        "errors": [
                            {
                                "resource": "Repository",
                                "code": "custom",
                                "field": "name",
                                "message": "name already exists on this account",
                            }
                        ],
                    },
                )
            self.repos[body["name"]] = self._repo(body["name"], body["description"])
            return httpx.Response(201, json=self.repos[body["name"]])
        name = parts[4] if len(parts) > 4 else ""
        repo = self.repos.get(name)
        if repo is None:
            return httpx.Response(404, json={"message": "Not Found"})
        if request.method == "GET" and len(parts) == 5:
            return httpx.Response(200, json=repo)
        if request.method == "DELETE" and len(parts) == 5:
            del self.repos[name]
            return httpx.Response(204)
        if parts[5] == "commits":
            if repo["empty"]:
                return httpx.Response(409, json={"message": "Git Repository is empty."})
            return httpx.Response(200, json={"sha": "c" * 40})
        if parts[5] == "contents" and request.method == "PUT":
            file_path = "/".join(parts[6:])
            files = self.files.setdefault(name, {})
            if file_path in files:
                return httpx.Response(
                    422, json={"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'}
                )
            files[file_path] = base64.b64decode(json.loads(request.content)["content"])
            repo["empty"] = False
            return httpx.Response(
                201, json={"content": {"path": file_path}, "commit": {"sha": f"{len(files):040d}"}}
            )
        return httpx.Response(404, json={"message": "Not Found"})

    def gitlab(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "GET" and path == "/api/v4/namespaces/acme":
            return httpx.Response(200, json={"id": 7, "full_path": "acme", "kind": "group"})
        if request.method == "POST" and path == "/api/v4/projects":
            body = json.loads(request.content)
            assert body["namespace_id"] == 7
            if body["path"] in self.repos:
                return httpx.Response(
                    400,
                    json={
                        "message": {
                            "name": ["has already been taken"],
                            "path": ["has already been taken"],
                        }
                    },
                )
            repo = self._repo(body["path"], body["description"])
            repo["default_branch"] = None
            self.repos[body["path"]] = repo
            return httpx.Response(201, json=repo)
        if path.startswith("/api/v4/projects/acme%2F"):
            found = self.repos.get(path.rsplit("%2F", 1)[1])
            return (
                httpx.Response(200, json=found)
                if found
                else httpx.Response(404, json={"message": "404 Project Not Found"})
            )
        by_id = {str(r["id"]): r for r in self.repos.values()}
        parts = path.strip("/").split("/")
        if len(parts) <= 3 or parts[3] not in by_id:
            return httpx.Response(404, json={"message": "404 Project Not Found"})
        repo = by_id[parts[3]]
        if request.method == "DELETE" and len(parts) == 4:
            del self.repos[repo["path"]]
            return httpx.Response(202, json={"message": "202 Accepted"})
        if path.endswith("/repository/commits") and request.method == "POST":
            body = json.loads(request.content)
            self.files[repo["path"]] = {
                a["file_path"]: base64.b64decode(a["content"]) for a in body["actions"]
            }
            repo["default_branch"] = body["branch"]
            return httpx.Response(201, json={"id": "d" * 40})
        if "/repository/branches/" in path:
            if repo["path"] not in self.files:
                return httpx.Response(404, json={"message": "404 Branch Not Found"})
            return httpx.Response(200, json={"name": "main", "commit": {"id": "d" * 40}})
        return httpx.Response(404, json={"message": "404 Not Found"})

    def gitea(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "POST" and path == "/api/v1/orgs/acme/repos":
            body = json.loads(request.content)
            if body["name"] in self.repos:
                return httpx.Response(
                    409, json={"message": "The repository with the same name already exists."}
                )
            self.repos[body["name"]] = self._repo(body["name"], body["description"])
            return httpx.Response(201, json=self.repos[body["name"]])
        parts = path.strip("/").split("/")
        repo = self.repos.get(parts[4]) if len(parts) > 4 else None
        if repo is None:
            return httpx.Response(404, json={"message": "The target couldn't be found."})
        if request.method == "GET" and len(parts) == 5:
            return httpx.Response(200, json=repo)
        if request.method == "DELETE" and len(parts) == 5:
            del self.repos[parts[4]]
            return httpx.Response(204)
        if request.method == "POST" and parts[5] == "contents":
            body = json.loads(request.content)
            self.files[parts[4]] = {
                f["path"]: base64.b64decode(f["content"]) for f in body["files"]
            }
            repo["empty"] = False
            return httpx.Response(201, json={"commit": {"sha": "e" * 40}, "files": []})
        if parts[5] == "branches":
            return httpx.Response(200, json={"name": "main", "commit": {"id": "e" * 40}})
        return httpx.Response(404, json={"message": "The target couldn't be found."})


BASE_URLS = {
    "github": "https://git.example.com/api/v3",
    "gitlab": "https://git.example.com/api/v4",
    "gitea": "https://git.example.com/api/v1",
}
AUTH = {
    "github": ("authorization", "Bearer tok-123"),
    "gitlab": ("private-token", "tok-123"),
    "gitea": ("authorization", "token tok-123"),
}


def hosted_settings(tmp_path: Path, provider: str) -> Settings:
    return make_settings(
        tmp_path,
        selfservice_git_provider_url=BASE_URLS[provider],
        selfservice_git_provider_token="tok-123",
        selfservice_git_provider_org="acme",
    )


def test_github_flow_creates_the_repo_and_pushes_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FakeHost("github")
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, "github"))

    output = RepoCreate().run(ctx, repo_input(provider="github"))

    assert host.calls()[:3] == [
        "GET /api/v3/repos/acme/payments-api",
        "POST /api/v3/orgs/acme/repos",
        "GET /api/v3/repos/acme/payments-api/commits/main",
    ]
    assert all(
        c.startswith("PUT /api/v3/repos/acme/payments-api/contents/") for c in host.calls()[3:]
    )
    assert all(r.headers["authorization"] == "Bearer tok-123" for r in host.requests)
    assert host.repos["payments-api"]["description"] == "Takes payments [lamplighter run-1-repo]"
    files = host.files["payments-api"]
    assert b"# payments-api" in files["README.md"]
    assert files[".lamplighter-run"] == b"run-1-repo\n"
    assert "src/payments_api/app.py" in files
    assert output.web_url == "https://git.example.com/acme/payments-api"
    assert output.clone_url == "https://git.example.com/acme/payments-api.git"

    # A second attempt finds its mark: no second repository, the same output.
    before = len(host.requests)
    assert RepoCreate().run(ctx, repo_input(provider="github")).clone_url == output.clone_url
    assert not any(r.method in ("POST", "PUT") for r in host.requests[before:])

    RepoCreate().compensate(ctx, repo_input(provider="github"), output)
    assert host.calls()[-1] == "DELETE /api/v3/repos/acme/payments-api"
    assert host.repos == {}


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_taken_name_on_the_host_is_a_name_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FakeHost(provider)
    host.install(monkeypatch)
    settings = hosted_settings(tmp_path, provider)
    RepoCreate().run(make_ctx(settings, run_id=1), repo_input(provider=provider))
    other = make_ctx(settings, run_id=2)

    with pytest.raises(ActionError) as caught:
        RepoCreate().run(other, repo_input(provider=provider))
    assert caught.value.field == "name" and "already exists" in str(caught.value)
    RepoCreate().compensate(other, repo_input(provider=provider), None)
    assert "payments-api" in host.repos
    assert not any(r.method == "DELETE" for r in host.requests)


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_name_taken_in_a_race_is_a_name_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """The repository did not exist when looked up but the create call says it does."""
    host = FakeHost(provider)
    host.install(monkeypatch)
    host.repos["payments-api"] = host._repo("payments-api", "made by someone else")
    original = host.handle

    def lookups_miss(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "payments-api" in request.url.path.replace("%2F", "/"):
            host.requests.append(request)
            return httpx.Response(404, json={"message": "Not Found"})
        return original(request)

    monkeypatch.setattr(host, "handle", lookups_miss)
    host.install(monkeypatch)
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(
            make_ctx(hosted_settings(tmp_path, provider)), repo_input(provider=provider)
        )
    assert caught.value.field == "name"
    assert host.repos["payments-api"]["description"] == "made by someone else"


@pytest.mark.parametrize("provider", ["gitlab", "gitea"])
def test_gitlab_and_gitea_push_one_commit_with_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FakeHost(provider)
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, provider))

    output = RepoCreate().run(ctx, repo_input(provider=provider))

    header, value = AUTH[provider]
    assert all(r.headers[header] == value for r in host.requests)
    pushes = [
        c for c in host.calls() if c.startswith("POST") and ("commits" in c or "contents" in c)
    ]
    expected = {
        "gitlab": "POST /api/v4/projects/101/repository/commits",
        "gitea": "POST /api/v1/repos/acme/payments-api/contents",
    }
    assert pushes == [expected[provider]]
    files = host.files["payments-api"]
    assert b"group:team-payments" in files["catalog-info.yaml"]
    assert files[".lamplighter-run"] == b"run-1-repo\n"
    assert output.commit in ("d" * 40, "e" * 40)
    assert output.web_url == "https://git.example.com/acme/payments-api"

    again = RepoCreate().run(ctx, repo_input(provider=provider))
    assert again == output
    assert len([c for c in host.calls() if c.startswith("POST")]) == 2  # no second create or push

    RepoCreate().compensate(ctx, repo_input(provider=provider), output)
    assert host.repos == {}


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_refused_token_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FakeHost(
        provider, fail=lambda r: httpx.Response(401, json={"message": "Bad credentials"})
    )
    host.install(monkeypatch)
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(
            make_ctx(hosted_settings(tmp_path, provider)), repo_input(provider=provider)
        )
    assert not caught.value.retryable
    assert "refused the token" in str(caught.value) and "401" in str(caught.value)
    assert "tok-123" not in str(caught.value)


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_unreachable_host_is_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    host = FakeHost(provider, fail=refuse)
    host.install(monkeypatch)
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(
            make_ctx(hosted_settings(tmp_path, provider)), repo_input(provider=provider)
        )
    assert caught.value.retryable
    assert "cannot reach" in str(caught.value)


def test_server_error_is_retryable_and_missing_configuration_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FakeHost("github", fail=lambda r: httpx.Response(502, text="Bad Gateway"))
    host.install(monkeypatch)
    with pytest.raises(ActionError) as caught:
        RepoCreate().run(
            make_ctx(hosted_settings(tmp_path, "github")), repo_input(provider="github")
        )
    assert caught.value.retryable

    with pytest.raises(ActionError) as caught:
        RepoCreate().run(make_ctx(make_settings(tmp_path)), repo_input(provider="gitea"))
    assert caught.value.field == "provider" and not caught.value.retryable
    assert "LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_URL" in str(caught.value)


# -- pipeline.create on hosted providers ------------------------------------------------------
class FileHost(FakeHost):
    """A FakeHost that also serves single files and the commit history of a path."""

    def __init__(
        self, provider: str, *, fail: Callable[[httpx.Request], httpx.Response | None] | None = None
    ) -> None:
        super().__init__(provider, fail=fail)
        self.history: dict[str, list[dict[str, Any]]] = {}
        repo = self._repo("payments-api", "Takes payments [lamplighter run-1-repo]")
        repo["empty"] = False
        self.repos["payments-api"] = repo
        self.files["payments-api"] = {"README.md": b"# payments-api\n"}
        self.record(
            "payments-api", "Create payments-api\n\nLamplighter-Run: run-1-repo\n", ["README.md"]
        )

    def record(self, name: str, message: str, paths: list[str]) -> str:
        sha = f"{sum(len(h) for h in self.history.values()) + 1:040x}"
        self.history.setdefault(name, []).insert(
            0, {"sha": sha, "message": message, "paths": paths}
        )
        return sha

    def commits(self, name: str) -> list[dict[str, Any]]:
        return self.history.get(name, [])

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.fail is None or self.fail(request) is None:
            reply = self.file_api(request)
            if reply is not None:
                self.requests.append(request)
                return reply
        return super().handle(request)

    def file_api(self, request: httpx.Request) -> httpx.Response | None:
        path = request.url.raw_path.decode().split("?")[0]
        parts = path.strip("/").split("/")
        if self.provider == "gitlab":
            by_id = {str(r["id"]): r for r in self.repos.values()}
            repo = by_id.get(parts[3]) if len(parts) > 5 else None
            if repo is None or parts[4] != "repository":
                return None
            name, kind, file_path = (
                repo["path"],
                parts[5],
                unquote(parts[6]) if len(parts) > 6 else "",
            )
        else:
            if len(parts) < 6 or parts[4] not in self.repos:
                return None
            name, kind, file_path = parts[4], parts[5], unquote("/".join(parts[6:]))
        files = self.files.setdefault(name, {})
        if kind in ("contents", "files") and file_path:
            if request.method == "GET":
                if file_path not in files:
                    return httpx.Response(404, json={"message": "Not Found"})
                content, blob = base64.b64encode(files[file_path]).decode(), _blob(files[file_path])
                if self.provider == "gitlab":
                    return httpx.Response(
                        200, json={"content": content, "encoding": "base64", "blob_id": blob}
                    )
                return httpx.Response(
                    200, json={"content": content, "encoding": "base64", "sha": blob}
                )
            body = json.loads(request.content)
            if request.method in ("PUT", "POST"):
                if file_path in files:
                    return httpx.Response(422, json={"message": "file already exists"})
                files[file_path] = base64.b64decode(body["content"])
                sha = self.record(name, body["message"], [file_path])
                return httpx.Response(
                    201, json={"content": {"path": file_path}, "commit": {"sha": sha}}
                )
            if request.method == "DELETE":
                if files.get(file_path) is None or _blob(files[file_path]) != body["sha"]:
                    return httpx.Response(409, json={"message": "sha does not match"})
                del files[file_path]
                self.record(name, body["message"], [file_path])
                return httpx.Response(200, json={"commit": {"sha": "x"}})
        if kind == "commits" and len(parts) == 6 and request.method == "GET":
            wanted = request.url.params["path"]
            touching = [c for c in self.commits(name) if wanted in c["paths"]][:1]
            if self.provider == "gitlab":
                return httpx.Response(
                    200, json=[{"id": c["sha"], "message": c["message"]} for c in touching]
                )
            return httpx.Response(
                200, json=[{"sha": c["sha"], "commit": {"message": c["message"]}} for c in touching]
            )
        if self.provider == "gitlab" and kind == "commits" and request.method == "POST":
            body = json.loads(request.content)
            for action in body["actions"]:
                if action["action"] == "create":
                    if action["file_path"] in files:
                        return httpx.Response(
                            400, json={"message": "A file with this name already exists"}
                        )
                    files[action["file_path"]] = base64.b64decode(action["content"])
                elif action["action"] == "delete":
                    if action["file_path"] not in files:
                        return httpx.Response(
                            400, json={"message": "A file with this name doesn't exist"}
                        )
                    del files[action["file_path"]]
            sha = self.record(
                name, body["commit_message"], [a["file_path"] for a in body["actions"]]
            )
            return httpx.Response(201, json={"id": sha, "message": body["commit_message"]})
        return None


def _blob(content: bytes) -> str:
    return hashlib.sha1(content).hexdigest()  # a fake blob id, named the way git names blobs


HOSTED_PIPELINE = {
    "github": (
        "github-actions",
        "PUT /api/v3/repos/acme/payments-api/contents/.github/workflows/ci.yml",
    ),
    "gitlab": ("gitlab-ci", "POST /api/v4/projects/101/repository/commits"),
    "gitea": (
        "github-actions",
        "POST /api/v1/repos/acme/payments-api/contents/.github/workflows/ci.yml",
    ),
}


def hosted_pipeline_input(provider: str, **overrides: Any) -> PipelineCreateInput:
    values: dict[str, Any] = {
        "clone_url": "https://git.example.com/acme/payments-api.git",
        "provider": provider,
        "repository": "payments-api",
        "flavour": HOSTED_PIPELINE[provider][0],
        "python_version": "3.11",
    }
    values.update(overrides)
    return PipelineCreateInput(**values)


def writes(host: FakeHost) -> list[str]:
    return [c for c in host.calls() if not c.startswith("GET")]


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_hosted_pipeline_is_committed_once_and_compensated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FileHost(provider)
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, provider), step_id="ci")
    data = hosted_pipeline_input(provider)
    flavour, endpoint = HOSTED_PIPELINE[provider]

    output = PipelineCreate().run(ctx, data)

    assert writes(host) == [endpoint]
    header, value = AUTH[provider]
    assert all(r.headers[header] == value for r in host.requests)
    path = ".gitlab-ci.yml" if flavour == "gitlab-ci" else ".github/workflows/ci.yml"
    assert output.path == path and output.flavour == flavour
    pipeline = yaml.safe_load(host.files["payments-api"][path])
    if flavour == "gitlab-ci":
        assert pipeline["test"]["image"] == "python:3.11"
        assert "python -m pytest" in pipeline["test"]["script"]
    else:
        steps = pipeline["jobs"]["test"]["steps"]
        assert {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}} in steps
        assert pipeline["on"]["push"]["branches"] == ["main"]
    latest = host.commits("payments-api")[0]
    assert latest["sha"] == output.commit
    assert "Lamplighter-Run: run-1-ci" in latest["message"]
    assert host.files["payments-api"]["README.md"] == b"# payments-api\n"

    # A second attempt finds the same file: no new commit, the same output.
    before = len(host.commits("payments-api"))
    assert PipelineCreate().run(ctx, data) == output
    assert len(host.commits("payments-api")) == before
    assert writes(host) == [endpoint]

    PipelineCreate().compensate(ctx, data, output)
    assert path not in host.files["payments-api"]
    assert "Lamplighter-Undo: run-1-ci" in host.commits("payments-api")[0]["message"]
    after = len(host.commits("payments-api"))
    PipelineCreate().compensate(ctx, data, output)  # already undone: no second commit
    assert len(host.commits("payments-api")) == after
    assert host.files["payments-api"]["README.md"] == b"# payments-api\n"


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_hosted_pipeline_compensate_leaves_a_file_changed_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FileHost(provider)
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, provider), step_id="ci")
    data = hosted_pipeline_input(provider)
    output = PipelineCreate().run(ctx, data)
    edited = host.files["payments-api"][output.path] + b"# tuned by a person\n"
    host.files["payments-api"][output.path] = edited
    host.record("payments-api", "Tune the pipeline", [output.path])

    PipelineCreate().compensate(ctx, data, output)

    assert host.files["payments-api"][output.path] == edited
    assert not any(c.startswith("DELETE") for c in host.calls())
    assert host.commits("payments-api")[0]["message"] == "Tune the pipeline"


def test_hosted_pipeline_refuses_a_different_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FileHost("github")
    host.files["payments-api"][".github/workflows/ci.yml"] = b"name: theirs\n"
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, "github"), step_id="ci")

    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(ctx, hosted_pipeline_input("github"))
    assert "different .github/workflows/ci.yml" in str(caught.value)
    PipelineCreate().compensate(ctx, hosted_pipeline_input("github"), None)
    assert host.files["payments-api"][".github/workflows/ci.yml"] == b"name: theirs\n"
    assert writes(host) == []


def test_hosted_pipeline_takes_the_repository_from_the_clone_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FileHost("gitea")
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, "gitea"), step_id="ci")

    PipelineCreate().run(ctx, hosted_pipeline_input("gitea", repository=""))
    assert writes(host) == [HOSTED_PIPELINE["gitea"][1]]

    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(
            ctx, hosted_pipeline_input("gitea", repository="", clone_url="https://x/")
        )
    assert caught.value.field == "repository"
    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(ctx, hosted_pipeline_input("gitea", repository="nope"))
    assert caught.value.field == "repository" and "no repository 'nope'" in str(caught.value)


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_hosted_pipeline_refused_token_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    host = FileHost(
        provider, fail=lambda r: httpx.Response(401, json={"message": "Bad credentials"})
    )
    host.install(monkeypatch)
    ctx = make_ctx(hosted_settings(tmp_path, provider), step_id="ci")

    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(ctx, hosted_pipeline_input(provider))
    assert not caught.value.retryable and caught.value.field == "provider"
    assert "refused the token" in str(caught.value) and "401" in str(caught.value)
    assert "tok-123" not in str(caught.value)
    assert ".github" not in str(host.files["payments-api"]) and len(host.files["payments-api"]) == 1


@pytest.mark.parametrize(
    "fail",
    [
        lambda r: httpx.Response(503, text="Service Unavailable"),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("connection refused", request=r)),
    ],
    ids=["5xx", "connect-error"],
)
@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_hosted_pipeline_outage_is_retryable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    fail: Callable[[httpx.Request], httpx.Response | None],
) -> None:
    host = FileHost(provider, fail=fail)
    host.install(monkeypatch)
    with pytest.raises(ActionError) as caught:
        PipelineCreate().run(
            make_ctx(hosted_settings(tmp_path, provider), step_id="ci"),
            hosted_pipeline_input(provider),
        )
    assert caught.value.retryable
