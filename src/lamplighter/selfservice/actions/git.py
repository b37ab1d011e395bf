"""``repo.create``: a git repository with an initial commit rendered from a copier skeleton.

The skeleton is a copier template directory under ``selfservice/skeletons/`` (``template`` names
it; paths leaving that directory are refused). It is rendered in-process with ``unsafe=False``, so
a skeleton cannot run tasks, migrations or custom Jinja extensions on the server.

Providers:

- ``local`` (default): a bare repository ``<data_dir>/git/<name>.git``, cloneable by path. It is
  built in a temporary directory beside it and renamed into place, so it appears complete or not
  at all, and two runs racing for one name cannot both win.
- ``github``, ``gitlab``, ``gitea``: the host's REST API with ``LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_*``
  (base URL, token, organisation or group). The files are pushed through the API.

Ownership mark: the initial commit carries ``.lamplighter-run`` holding ``ctx.key``; on the hosted
providers the repository description also ends with ``[lamplighter <ctx.key>]``, written by the
same request that creates the repository. A second attempt of the step finds its mark and returns
the same output; compensate deletes only a repository carrying the mark.

Example step::

    - id: repo
      action: repo.create
      input:
        name: "${{ parameters.name }}"
        owner: "${{ parameters.team }}"
        template: python-web-service
        data: {python_version: "3.12"}
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    register,
)

SKELETONS_DIR = Path(__file__).resolve().parents[1] / "skeletons"
MARKER_FILE = ".lamplighter-run"
DEFAULT_BRANCH = "main"
SLUG_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
Provider = Literal["local", "github", "gitlab", "gitea"]


# -- git CLI ------------------------------------------------------------------------------------
class GitError(Exception):
    """A git command failed; the message is git's own stderr."""


_GIT_CONFIG = (
    "-c",
    "user.name=Lamplighter",
    "-c",
    "user.email=lamplighter@localhost",
    "-c",
    f"init.defaultBranch={DEFAULT_BRANCH}",
    "-c",
    "commit.gpgSign=false",
    "-c",
    f"core.hooksPath={os.devnull}",
)


def run_git(*args: str, cwd: Path | None = None) -> str:
    """Run git without the user's or system's configuration, never prompting; return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    try:
        proc = subprocess.run(  # noqa: S603 - fixed executable, arguments are not shell-parsed
            ["git", *_GIT_CONFIG, *args],  # noqa: S607 - git from PATH, like any git tool
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} could not run: {exc}") from exc
    if proc.returncode != 0:
        raise GitError(proc.stderr.strip() or f"git {args[0]} exited with {proc.returncode}")
    return proc.stdout.strip()


def local_git_root(settings: Settings) -> Path:
    return (settings.data_dir / "git").resolve()


# -- rendering ----------------------------------------------------------------------------------
def skeleton_dir(template: str) -> Path:
    """The skeleton directory ``template`` names; refuse anything outside the skeletons folder."""
    root = SKELETONS_DIR.resolve()
    candidate = (root / template).resolve()
    if candidate == root or not candidate.is_relative_to(root):
        raise ActionError(f"template {template!r} is not a skeleton directory", field="template")
    if not any((candidate / name).is_file() for name in ("copier.yml", "copier.yaml")):
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
        raise ActionError(f"no skeleton named {template!r}; available: {known}", field="template")
    return candidate


def render_skeleton(template: str, answers: dict[str, Any]) -> dict[str, bytes]:
    """Render a skeleton with copier; return its files by POSIX path relative to the root."""
    # Imported here: copier (and the prompt toolkit it brings) costs a few hundred milliseconds
    # at start-up, which every CLI command would pay.
    import copier
    from copier.errors import CopierError, UnsafeTemplateError

    source = skeleton_dir(template)
    with tempfile.TemporaryDirectory(prefix="lamplighter-render-") as tmp:
        target = Path(tmp) / "out"
        try:
            copier.run_copy(
                str(source), str(target), data=answers, defaults=True, unsafe=False, quiet=True
            )
        except UnsafeTemplateError as exc:
            raise ActionError(
                f"skeleton {template!r} needs features Lamplighter does not run "
                f"(tasks, migrations or extensions): {exc}",
                field="template",
            ) from exc
        except (CopierError, ValueError) as exc:
            raise ActionError(
                f"skeleton {template!r} refused the answers: {exc}", field="data"
            ) from exc
        return {
            path.relative_to(target).as_posix(): path.read_bytes()
            for path in sorted(target.rglob("*"))
            if path.is_file() and ".git" not in path.relative_to(target).parts
        }


# -- schemas ------------------------------------------------------------------------------------
class RepoCreateInput(ActionInput):
    name: str = Field(pattern=SLUG_PATTERN, description="Repository name, a lowercase slug.")
    description: str = Field(default="", max_length=300)
    owner: str = Field(min_length=1, max_length=100, description="Slug of the owning team.")
    template: str = Field(
        default="python-web-service", description="Skeleton directory under skeletons/."
    )
    data: dict[str, Any] = Field(default_factory=dict, description="Extra answers for copier.")
    provider: Provider = "local"

    @field_validator("data")
    @classmethod
    def _plain_answer_names(cls, data: dict[str, Any]) -> dict[str, Any]:
        # Names starting with "_" are copier's own settings (_src_path, _tasks …).
        bad = sorted(k for k in data if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", k))
        if bad:
            raise ValueError(f"answer names must be plain identifiers: {', '.join(bad)}")
        return data


class RepoCreateOutput(ActionOutput):
    provider: Provider
    name: str
    clone_url: str
    web_url: str | None
    default_branch: str
    commit: str


def _name_taken(name: str, where: str) -> ActionError:
    return ActionError(f"a repository named {name!r} already exists {where}", field="name")


# -- local provider -----------------------------------------------------------------------------
def _local_marker(repo: Path) -> str | None:
    """The key in the initial commit's marker file, or None (empty repo, no marker)."""
    try:
        roots = run_git("--git-dir", str(repo), "rev-list", "--max-parents=0", "HEAD").split()
        if not roots:
            return None
        return run_git("--git-dir", str(repo), "show", f"{roots[-1]}:{MARKER_FILE}").strip()
    except GitError:
        return None


def _local_output(repo: Path, name: str) -> RepoCreateOutput:
    roots = run_git("--git-dir", str(repo), "rev-list", "--max-parents=0", "HEAD").split()
    return RepoCreateOutput(
        provider="local",
        name=name,
        clone_url=str(repo),
        web_url=None,
        default_branch=DEFAULT_BRANCH,
        commit=roots[-1],
    )


def _local_existing(repo: Path, name: str, key: str) -> RepoCreateOutput | None:
    if not repo.exists():
        return None
    if _local_marker(repo) == key:
        return _local_output(repo, name)
    raise _name_taken(name, f"in {repo.parent}")


def _create_local(
    ctx: StepContext, data: RepoCreateInput, files: dict[str, bytes]
) -> RepoCreateOutput:
    root = local_git_root(ctx.settings)
    repo = root / f"{data.name}.git"
    existing = _local_existing(repo, data.name, ctx.key)
    if existing is not None:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed in: it appears whole or not at all.
    with tempfile.TemporaryDirectory(prefix=f".tmp-{ctx.key}-", dir=root) as tmp:
        work, bare = Path(tmp) / "work", Path(tmp) / "repo.git"
        _write_files(work, files)
        run_git("init", "-q", str(work))
        run_git("add", "-A", cwd=work)
        run_git("commit", "-q", "-m", _commit_message(data, ctx.key), cwd=work)
        run_git("init", "-q", "--bare", str(bare))
        run_git("push", "-q", str(bare), f"HEAD:refs/heads/{DEFAULT_BRANCH}", cwd=work)
        try:
            bare.rename(repo)
        except OSError:
            existing = _local_existing(repo, data.name, ctx.key)
            if existing is not None:
                return existing
            raise _name_taken(data.name, f"in {root}") from None
    ctx.log(f"created {repo}")
    return _local_output(repo, data.name)


def _compensate_local(ctx: StepContext, name: str) -> None:
    root = local_git_root(ctx.settings)
    repo = root / f"{name}.git"
    if repo.exists() and _local_marker(repo) == ctx.key:
        shutil.rmtree(repo)
        ctx.log(f"deleted {repo}")
    if root.is_dir():  # leftovers of an attempt killed half-way
        for leftover in root.glob(f".tmp-{ctx.key}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _write_files(target: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _commit_message(data: RepoCreateInput, key: str) -> str:
    return f"Create {data.name} from the {data.template} template\n\nLamplighter-Run: {key}\n"


# -- hosted providers ---------------------------------------------------------------------------
def default_client(base_url: str, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0)


# Tests swap this for one that builds a client on httpx.MockTransport.
client_factory: Callable[[str, dict[str, str]], httpx.Client] = default_client


def _marker_text(key: str) -> str:
    return f"[lamplighter {key}]"


def _with_marker(description: str, key: str) -> str:
    return f"{description} {_marker_text(key)}".strip()


class HostApi:
    """One hosted git provider's REST API; subclasses speak GitHub, GitLab or Gitea."""

    provider: Provider
    label: str

    def __init__(self, settings: Settings) -> None:
        token = settings.selfservice_git_provider_token
        if not settings.selfservice_git_provider_url or token is None:
            raise ActionError(
                f"the {self.label} provider is not configured: set "
                "LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_URL and LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_TOKEN",
                field="provider",
            )
        self.base_url = settings.selfservice_git_provider_url.rstrip("/")
        self.org = settings.selfservice_git_provider_org.strip()
        self.client = client_factory(self.base_url, self.auth_headers(token.get_secret_value()))

    def auth_headers(self, token: str) -> dict[str, str]:
        raise NotImplementedError

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send; outages become retryable errors, refused credentials a clear one."""
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ActionError(
                f"cannot reach {self.label} at {self.base_url}: {exc}", retryable=True
            ) from exc
        if response.status_code in (401, 403):
            raise ActionError(
                f"{self.label} refused the token ({response.status_code} on {method} {url}): "
                "check LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_TOKEN and its permissions",
                field="provider",
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise ActionError(
                f"{self.label} is unavailable ({response.status_code} on {method} {url})",
                retryable=True,
            )
        return response

    def unexpected(self, response: httpx.Response) -> ActionError:
        return ActionError(
            f"{self.label} answered {response.status_code} to {response.request.method} "
            f"{response.request.url.path}: {response.text[:300]}"
        )

    def close(self) -> None:
        self.client.close()

    # The three operations repo.create needs.
    def find(self, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def create(self, name: str, description: str) -> dict[str, Any]:
        raise NotImplementedError

    def push(self, repo: dict[str, Any], files: dict[str, bytes], message: str) -> str:
        """Commit ``files`` to an empty repository's default branch; return the commit sha."""
        raise NotImplementedError

    def head(self, repo: dict[str, Any]) -> str | None:
        """The default branch's commit, or None while the repository is empty."""
        raise NotImplementedError

    def delete(self, repo: dict[str, Any]) -> None:
        raise NotImplementedError

    def output(self, repo: dict[str, Any], commit: str) -> RepoCreateOutput:
        raise NotImplementedError

    # The file operations pipeline.create needs, on the default branch.
    def branch(self, repo: dict[str, Any]) -> str:
        return str(repo.get("default_branch") or DEFAULT_BRANCH)

    def get_file(self, repo: dict[str, Any], path: str) -> tuple[bytes, str] | None:
        """The file's content and blob sha on the default branch, or None when it is absent."""
        raise NotImplementedError

    def put_file(self, repo: dict[str, Any], path: str, content: bytes, message: str) -> str:
        """Commit ``content`` as a new file ``path``; return the commit sha."""
        raise NotImplementedError

    def delete_file(self, repo: dict[str, Any], path: str, blob_sha: str, message: str) -> None:
        """Commit the removal of ``path``."""
        raise NotImplementedError

    def last_commit(self, repo: dict[str, Any], path: str) -> tuple[str, str] | None:
        """The sha and message of the last commit touching ``path``, or None."""
        raise NotImplementedError

    def owner_name(self) -> str:
        """The organisation, or the token's own account when none is configured."""
        if self.org:
            return self.org
        response = self.request("GET", "/user")
        if response.status_code != 200:
            raise self.unexpected(response)
        body = response.json()
        return str(body.get("login") or body.get("username"))


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


class GitHubApi(HostApi):
    provider: Provider = "github"
    label = "GitHub"
    create_file_method = "PUT"  # Gitea's contents API, otherwise the same, creates with POST
    page_size_param = "per_page"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def find(self, name: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/repos/{self.owner_name()}/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        return dict(response.json())

    def create(self, name: str, description: str) -> dict[str, Any]:
        url = f"/orgs/{self.org}/repos" if self.org else "/user/repos"
        body = {"name": name, "description": description, "private": True, "auto_init": False}
        response = self.request("POST", url, json=body)
        if response.status_code == 422 and "already exists" in response.text:
            raise _name_taken(name, "on GitHub")
        if response.status_code != 201:
            raise self.unexpected(response)
        return dict(response.json())

    def push(self, repo: dict[str, Any], files: dict[str, bytes], message: str) -> str:
        # The contents API is the one that works on an empty repository; one commit per file.
        commit = ""
        for path, content in files.items():
            response = self.request(
                "PUT",
                f"/repos/{repo['full_name']}/contents/{quote(path)}",
                json={"message": message, "content": _b64(content)},
            )
            if response.status_code == 422:  # already there: an earlier attempt pushed it
                continue
            if response.status_code not in (200, 201):
                raise self.unexpected(response)
            commit = str(response.json()["commit"]["sha"])
        return commit or (self.head(repo) or "")

    def head(self, repo: dict[str, Any]) -> str | None:
        branch = repo.get("default_branch") or DEFAULT_BRANCH
        response = self.request("GET", f"/repos/{repo['full_name']}/commits/{branch}")
        if response.status_code in (404, 409, 422):  # 409: "Git Repository is empty."
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        return str(response.json()["sha"])

    def delete(self, repo: dict[str, Any]) -> None:
        response = self.request("DELETE", f"/repos/{repo['full_name']}")
        if response.status_code not in (204, 404):
            raise self.unexpected(response)

    def output(self, repo: dict[str, Any], commit: str) -> RepoCreateOutput:
        return RepoCreateOutput(
            provider=self.provider,
            name=str(repo["name"]),
            clone_url=str(repo["clone_url"]),
            web_url=str(repo["html_url"]),
            default_branch=str(repo.get("default_branch") or DEFAULT_BRANCH),
            commit=commit,
        )

    def get_file(self, repo: dict[str, Any], path: str) -> tuple[bytes, str] | None:
        response = self.request(
            "GET",
            f"/repos/{repo['full_name']}/contents/{quote(path)}",
            params={"ref": self.branch(repo)},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        body = response.json()
        return base64.b64decode(body["content"]), str(body["sha"])

    def put_file(self, repo: dict[str, Any], path: str, content: bytes, message: str) -> str:
        response = self.request(
            self.create_file_method,
            f"/repos/{repo['full_name']}/contents/{quote(path)}",
            json={"message": message, "content": _b64(content), "branch": self.branch(repo)},
        )
        if response.status_code not in (200, 201):
            raise self.unexpected(response)
        return str(response.json()["commit"]["sha"])

    def delete_file(self, repo: dict[str, Any], path: str, blob_sha: str, message: str) -> None:
        response = self.request(
            "DELETE",
            f"/repos/{repo['full_name']}/contents/{quote(path)}",
            json={"message": message, "sha": blob_sha, "branch": self.branch(repo)},
        )
        if response.status_code not in (200, 404):
            raise self.unexpected(response)

    def last_commit(self, repo: dict[str, Any], path: str) -> tuple[str, str] | None:
        response = self.request(
            "GET",
            f"/repos/{repo['full_name']}/commits",
            params={"path": path, "sha": self.branch(repo), self.page_size_param: 1},
        )
        if response.status_code in (404, 409):
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        commits = response.json()
        if not commits:
            return None
        return str(commits[0]["sha"]), str(commits[0]["commit"]["message"])


class GitLabApi(HostApi):
    provider = "gitlab"
    label = "GitLab"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token}

    def find(self, name: str) -> dict[str, Any] | None:
        path = quote(f"{self.owner_name()}/{name}", safe="")
        response = self.request("GET", f"/projects/{path}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        return dict(response.json())

    def create(self, name: str, description: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "path": name,
            "description": description,
            "visibility": "private",
            "initialize_with_readme": False,
            "default_branch": DEFAULT_BRANCH,
        }
        if self.org:
            namespace = self.request("GET", f"/namespaces/{quote(self.org, safe='')}")
            if namespace.status_code != 200:
                raise ActionError(
                    f"GitLab group {self.org!r} (LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_ORG) "
                    f"was not found ({namespace.status_code})",
                    field="provider",
                )
            body["namespace_id"] = namespace.json()["id"]
        response = self.request("POST", "/projects", json=body)
        if response.status_code in (400, 409, 422) and "taken" in response.text:
            raise _name_taken(name, "on GitLab")
        if response.status_code != 201:
            raise self.unexpected(response)
        return dict(response.json())

    def push(self, repo: dict[str, Any], files: dict[str, bytes], message: str) -> str:
        actions = [
            {"action": "create", "file_path": path, "content": _b64(content), "encoding": "base64"}
            for path, content in files.items()
        ]
        response = self.request(
            "POST",
            f"/projects/{repo['id']}/repository/commits",
            json={"branch": DEFAULT_BRANCH, "commit_message": message, "actions": actions},
        )
        if response.status_code != 201:
            raise self.unexpected(response)
        return str(response.json()["id"])

    def head(self, repo: dict[str, Any]) -> str | None:
        branch = quote(str(repo.get("default_branch") or DEFAULT_BRANCH), safe="")
        response = self.request("GET", f"/projects/{repo['id']}/repository/branches/{branch}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        return str(response.json()["commit"]["id"])

    def delete(self, repo: dict[str, Any]) -> None:
        response = self.request("DELETE", f"/projects/{repo['id']}")
        if response.status_code not in (202, 204, 404):
            raise self.unexpected(response)

    def output(self, repo: dict[str, Any], commit: str) -> RepoCreateOutput:
        return RepoCreateOutput(
            provider="gitlab",
            name=str(repo["path"]),
            clone_url=str(repo["http_url_to_repo"]),
            web_url=str(repo["web_url"]),
            default_branch=str(repo.get("default_branch") or DEFAULT_BRANCH),
            commit=commit,
        )

    def _file_url(self, repo: dict[str, Any], path: str) -> str:
        return f"/projects/{repo['id']}/repository/files/{quote(path, safe='')}"

    def get_file(self, repo: dict[str, Any], path: str) -> tuple[bytes, str] | None:
        response = self.request(
            "GET", self._file_url(repo, path), params={"ref": self.branch(repo)}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        body = response.json()
        return base64.b64decode(body["content"]), str(body["blob_id"])

    def _commit(self, repo: dict[str, Any], action: dict[str, Any], message: str) -> str:
        response = self.request(
            "POST",
            f"/projects/{repo['id']}/repository/commits",
            json={"branch": self.branch(repo), "commit_message": message, "actions": [action]},
        )
        if response.status_code != 201:
            raise self.unexpected(response)
        return str(response.json()["id"])

    def put_file(self, repo: dict[str, Any], path: str, content: bytes, message: str) -> str:
        action = {
            "action": "create",
            "file_path": path,
            "content": _b64(content),
            "encoding": "base64",
        }
        return self._commit(repo, action, message)

    def delete_file(self, repo: dict[str, Any], path: str, blob_sha: str, message: str) -> None:
        self._commit(repo, {"action": "delete", "file_path": path}, message)

    def last_commit(self, repo: dict[str, Any], path: str) -> tuple[str, str] | None:
        response = self.request(
            "GET",
            f"/projects/{repo['id']}/repository/commits",
            params={"path": path, "ref_name": self.branch(repo), "per_page": 1},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        commits = response.json()
        if not commits:
            return None
        return str(commits[0]["id"]), str(commits[0]["message"])


class GiteaApi(GitHubApi):
    """Gitea's API follows GitHub's for repositories, contents and commits; these differ."""

    provider: Provider = "gitea"
    label = "Gitea"
    create_file_method = "POST"
    page_size_param = "limit"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}"}

    def create(self, name: str, description: str) -> dict[str, Any]:
        url = f"/orgs/{self.org}/repos" if self.org else "/user/repos"
        body = {
            "name": name,
            "description": description,
            "private": True,
            "auto_init": False,
            "default_branch": DEFAULT_BRANCH,
        }
        response = self.request("POST", url, json=body)
        if response.status_code in (409, 422):
            raise _name_taken(name, "on Gitea")
        if response.status_code != 201:
            raise self.unexpected(response)
        return dict(response.json())

    def push(self, repo: dict[str, Any], files: dict[str, bytes], message: str) -> str:
        body = {
            "branch": DEFAULT_BRANCH,
            "message": message,
            "files": [
                {"operation": "create", "path": path, "content": _b64(content)}
                for path, content in files.items()
            ],
        }
        response = self.request("POST", f"/repos/{repo['full_name']}/contents", json=body)
        if response.status_code != 201:
            raise self.unexpected(response)
        return str(response.json()["commit"]["sha"])

    def head(self, repo: dict[str, Any]) -> str | None:
        if repo.get("empty"):
            return None
        branch = repo.get("default_branch") or DEFAULT_BRANCH
        response = self.request("GET", f"/repos/{repo['full_name']}/branches/{branch}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(response)
        return str(response.json()["commit"]["id"])


HOSTS: dict[str, type[HostApi]] = {"github": GitHubApi, "gitlab": GitLabApi, "gitea": GiteaApi}


def _carries_marker(repo: dict[str, Any], key: str) -> bool:
    return _marker_text(key) in str(repo.get("description") or "")


def _create_hosted(
    ctx: StepContext, data: RepoCreateInput, files: dict[str, bytes]
) -> RepoCreateOutput:
    api = HOSTS[data.provider](ctx.settings)
    try:
        repo = api.find(data.name)
        if repo is not None and not _carries_marker(repo, ctx.key):
            raise _name_taken(data.name, f"on {api.label}")
        if repo is None:
            repo = api.create(data.name, _with_marker(data.description, ctx.key))
            ctx.log(f"created {api.label} repository {data.name}")
        commit = api.head(repo)
        if commit is None:  # new, or an earlier attempt stopped before pushing
            commit = api.push(repo, files, _commit_message(data, ctx.key))
        return api.output(repo, commit)
    finally:
        api.close()


def _compensate_hosted(ctx: StepContext, data: RepoCreateInput) -> None:
    api = HOSTS[data.provider](ctx.settings)
    try:
        repo = api.find(data.name)
        if repo is not None and _carries_marker(repo, ctx.key):
            api.delete(repo)
            ctx.log(f"deleted {api.label} repository {data.name}")
    finally:
        api.close()


# -- the action ---------------------------------------------------------------------------------
@register
class RepoCreate(Action):
    """Create a git repository whose first commit is a rendered copier skeleton.

    Input ``{"name": "payments-api", "owner": "team-payments", "template": "python-web-service"}``
    gives ``{"clone_url": "<data_dir>/git/payments-api.git", "commit": "…", …}`` on the local
    provider; ``git clone <clone_url>`` checks out the rendered service.
    """

    name = "repo.create"
    title = "Create a git repository"
    description = "Create a repository from a copier skeleton and push its first commit."
    Input = RepoCreateInput
    Output = RepoCreateOutput

    def run(self, ctx: StepContext, data: RepoCreateInput) -> RepoCreateOutput:
        answers = {
            **data.data,
            "name": data.name,
            "description": data.description,
            "owner": data.owner,
        }
        files = render_skeleton(data.template, answers)
        files[MARKER_FILE] = f"{ctx.key}\n".encode()
        ctx.log(f"rendered {len(files)} files from the {data.template} skeleton")
        if data.provider == "local":
            return _create_local(ctx, data, files)
        return _create_hosted(ctx, data, files)

    def compensate(
        self, ctx: StepContext, data: RepoCreateInput, output: RepoCreateOutput | None
    ) -> None:
        if data.provider == "local":
            _compensate_local(ctx, data.name)
        else:
            _compensate_hosted(ctx, data)
