"""The hosted git providers' REST APIs (GitHub, GitLab, Gitea), as ``repo.create`` and
``pipeline.create`` use them: find, create, push and delete a repository; read, write and
delete one file on its default branch. Outages are retryable action errors, a refused token
a clear one. Requests go through ``client_factory``, which tests swap for an
``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

import httpx

from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import ActionError, ActionOutput

DEFAULT_BRANCH = "main"
Provider = Literal["local", "github", "gitlab", "gitea"]


class RepoCreateOutput(ActionOutput):
    provider: Provider
    name: str
    clone_url: str
    web_url: str | None
    default_branch: str
    commit: str


def name_taken(name: str, where: str) -> ActionError:
    return ActionError(f"a repository named {name!r} already exists {where}", field="name")


def default_client(base_url: str, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0)


# Tests swap this for one that builds a client on httpx.MockTransport.
client_factory: Callable[[str, dict[str, str]], httpx.Client] = default_client


def marker_text(key: str) -> str:
    return f"[lamplighter {key}]"


def with_marker(description: str, key: str) -> str:
    return f"{description} {marker_text(key)}".strip()


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
            raise name_taken(name, "on GitHub")
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
            raise name_taken(name, "on GitLab")
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
            raise name_taken(name, "on Gitea")
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
