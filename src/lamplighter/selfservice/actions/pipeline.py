"""``pipeline.create``: add a CI pipeline definition to a repository made by ``repo.create``.

Two flavours: ``github-actions`` (``.github/workflows/ci.yml``) and ``gitlab-ci``
(``.gitlab-ci.yml``). The file is committed on the default branch as a new commit whose message
carries ``Lamplighter-Run: <ctx.key>``; that trailer is the mark compensate looks for before it
commits the file's removal. A second attempt finds the file with the same content and makes no
new commit.

Providers (``provider``, as repo.create's input; ``local`` by default):

- ``local``: the bare repository ``clone_url`` names, under ``<data_dir>/git``; cloned, committed
  and pushed with git.
- ``github``, ``gitlab``, ``gitea``: the repository ``repository`` names (repo.create's ``name``
  output; when left empty it is the last segment of ``clone_url`` without ``.git``), in the
  configured organisation or group, through the host's REST API with the same
  ``LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_*`` settings as repo.create. The file is read back with
  the contents/files API to tell "already there" from "different"; the commit is made by the
  contents API (GitHub, Gitea) or the commits API (GitLab). Compensate removes it only when the
  last commit touching the file carries this run's mark, as on the local provider.

Example step::

    - id: ci
      action: pipeline.create
      input:
        clone_url: "${{ steps.repo.output.clone_url }}"
        provider: "${{ steps.repo.output.provider }}"
        repository: "${{ steps.repo.output.name }}"
        flavour: github-actions
        python_version: "3.12"
        test_command: python -m pytest
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Ownership,
    StepContext,
    register,
)
from lamplighter.selfservice.actions.git import (
    SLUG_PATTERN,
    GitError,
    local_git_root,
    local_marker,
    run_git,
)
from lamplighter.selfservice.actions.git_hosts import DEFAULT_BRANCH, HOSTS, Provider

_HOSTED_MARK = re.compile(r"\[lamplighter (?P<key>run-\S+)\]")

Flavour = Literal["github-actions", "gitlab-ci"]
PATHS: dict[str, str] = {
    "github-actions": ".github/workflows/ci.yml",
    "gitlab-ci": ".gitlab-ci.yml",
}
_ONE_LINE = r"^[^\r\n]+$"

_RELEASE_GATE = {
    "github-actions": """
  # Release gate (coming with Lamplighter's release gates): before deploying, ask Lamplighter
  # whether this release may go out, and stop when the answer is no.
  # release-gate:
  #   needs: test
  #   runs-on: ubuntu-latest
  #   steps:
  #     - run: lamplighter gate check --service "$SERVICE" --version "$GITHUB_SHA"
""",
    "gitlab-ci": """
# Release gate (coming with Lamplighter's release gates): before deploying, ask Lamplighter
# whether this release may go out, and stop when the answer is no.
# release-gate:
#   stage: test
#   needs: [test]
#   script:
#     - lamplighter gate check --service "$SERVICE" --version "$CI_COMMIT_SHA"
""",
}


class PipelineCreateInput(ActionInput):
    clone_url: str = Field(min_length=1, description="The repository, as repo.create outputs it.")
    provider: Provider = "local"
    repository: str = Field(
        default="",
        pattern=rf"({SLUG_PATTERN})|^$",
        description="The hosted repository's name (repo.create's name output); "
        "empty: taken from clone_url.",
    )
    flavour: Flavour = "github-actions"
    python_version: str = Field(default="3.12", pattern=r"^3\.[0-9]{1,2}$")
    install_command: str = Field(
        default="python -m pip install -e '.[test]'", pattern=_ONE_LINE, max_length=500
    )
    test_command: str = Field(default="python -m pytest", pattern=_ONE_LINE, max_length=500)


class PipelineCreateOutput(ActionOutput):
    flavour: Flavour
    path: str
    commit: str


def render_pipeline(data: PipelineCreateInput, *, branch: str) -> str:
    """The pipeline file's text: YAML built as data, so it is always valid."""
    header = "# CI pipeline added by Lamplighter. Edit freely: it is yours now.\n"
    document: dict[str, Any]
    if data.flavour == "github-actions":
        document = {
            "name": "CI",
            "on": {"push": {"branches": [branch]}, "pull_request": {"branches": [branch]}},
            "jobs": {
                "test": {
                    "runs-on": "ubuntu-latest",
                    "steps": [
                        {"uses": "actions/checkout@v4"},
                        {
                            "uses": "actions/setup-python@v5",
                            "with": {"python-version": data.python_version},
                        },
                        {"run": data.install_command},
                        {"run": data.test_command},
                    ],
                }
            },
        }
    else:
        document = {
            "stages": ["test"],
            "test": {
                "stage": "test",
                "image": f"python:{data.python_version}",
                "script": [data.install_command, data.test_command],
            },
        }
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
    return header + body + _RELEASE_GATE[data.flavour]


def _local_repository(ctx: StepContext, clone_url: str) -> Path:
    """The bare repository ``clone_url`` names; only ones under ``<data_dir>/git``."""
    root = local_git_root(ctx.settings)
    if "://" in clone_url or clone_url.startswith("git@"):
        raise ActionError(
            f"{clone_url!r} is not a local repository: set provider (github, gitlab or gitea) "
            "for a hosted one",
            field="clone_url",
        )
    path = Path(clone_url).resolve()
    if not path.is_relative_to(root) or not (path / "HEAD").is_file():
        raise ActionError(
            f"{clone_url!r} is not a repository created by repo.create", field="clone_url"
        )
    return path


def repository_entity(name: str) -> str:
    """The catalog entity that owns repository ``name``: the service of the same name."""
    return f"service:default/{name}"


def _require_may_change(ctx: StepContext, name: str, mark: str | None, field: str) -> None:
    """A repository repo.create made in this run is the requester's; any other is changed only
    by its catalog entity's team (or an SRE or admin)."""
    if ctx.created_by_this_run(mark):
        return
    ctx.require_may_change(repository_entity(name), field=field, what=f"repository {name!r}")


def _hosted_mark(repo: dict[str, Any]) -> str | None:
    found = _HOSTED_MARK.search(str(repo.get("description") or ""))
    return found["key"] if found else None


def _branch(work: Path) -> str:
    try:
        return run_git("symbolic-ref", "--short", "HEAD", cwd=work) or DEFAULT_BRANCH
    except GitError:
        return DEFAULT_BRANCH


def _push(work: Path, branch: str) -> None:
    try:
        run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    except GitError as exc:  # someone pushed meanwhile: a retry starts from the new head
        raise ActionError(f"the push was refused: {exc}", retryable=True) from exc


def _last_commit_message(work: Path, path: str) -> str:
    try:
        return run_git("log", "-1", "--format=%B", "--", path, cwd=work)
    except GitError:
        return ""


def _message(verb: str, flavour: str, trailer: str, key: str) -> str:
    return f"{verb} the {flavour} CI pipeline\n\n{trailer}: {key}\n"


def _hosted_name(data: PipelineCreateInput) -> str:
    """The hosted repository's name: ``repository``, else the clone URL's last segment."""
    if data.repository:
        return data.repository
    last = data.clone_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = last.removesuffix(".git")
    if not re.fullmatch(SLUG_PATTERN, name):
        raise ActionError(
            f"cannot tell the repository's name from {data.clone_url!r}: set repository",
            field="repository",
        )
    return name


def _run_hosted(ctx: StepContext, data: PipelineCreateInput) -> PipelineCreateOutput:
    relative = PATHS[data.flavour]
    api = HOSTS[data.provider](ctx.settings)
    try:
        name = _hosted_name(data)
        repo = api.find(name)
        if repo is None:
            raise ActionError(
                f"{api.label} has no repository {name!r} (in {api.org or 'the token account'})",
                field="repository",
            )
        _require_may_change(
            ctx, name, _hosted_mark(repo), "repository" if data.repository else "clone_url"
        )
        content = render_pipeline(data, branch=api.branch(repo))
        existing = api.get_file(repo, relative)
        if existing is not None:
            if existing[0].decode(errors="replace") != content:
                raise ActionError(
                    f"the repository already has a different {relative}", field="clone_url"
                )
            last = api.last_commit(repo, relative)
            commit = last[0] if last else ""
            return PipelineCreateOutput(flavour=data.flavour, path=relative, commit=commit)
        message = _message("Add", data.flavour, "Lamplighter-Run", ctx.key)
        commit = api.put_file(repo, relative, content.encode(), message)
    finally:
        api.close()
    ctx.log(f"committed {relative} to {api.label} repository {name} ({commit[:12]})")
    return PipelineCreateOutput(flavour=data.flavour, path=relative, commit=commit)


def _compensate_hosted(ctx: StepContext, data: PipelineCreateInput) -> None:
    relative = PATHS[data.flavour]
    try:
        name = _hosted_name(data)
    except ActionError:
        return  # run refused the same input: it committed nothing
    api = HOSTS[data.provider](ctx.settings)
    try:
        repo = api.find(name)
        if repo is None:
            return  # the repository is gone (or never was): nothing of ours is left in it
        existing = api.get_file(repo, relative)
        if existing is None:
            return
        last = api.last_commit(repo, relative)
        if last is None or f"Lamplighter-Run: {ctx.key}" not in last[1]:
            return  # changed since, or never ours: a person's work is not undone
        message = _message("Remove", data.flavour, "Lamplighter-Undo", ctx.key)
        api.delete_file(repo, relative, existing[1], message)
    finally:
        api.close()
    ctx.log(f"removed {relative} from {api.label} repository {name}")


@register
class PipelineCreate(Action):
    """Add a CI pipeline to a repository.

    Input ``{"clone_url": "<data_dir>/git/payments-api.git", "flavour": "github-actions"}`` adds
    ``.github/workflows/ci.yml`` (checkout, set up Python, install, test) in a new commit and
    outputs ``{"path": ".github/workflows/ci.yml", "commit": "<sha>", …}``.
    """

    name = "pipeline.create"
    title = "Add a CI pipeline"
    description = "Commit a GitHub Actions or GitLab CI pipeline to a repository."
    Input = PipelineCreateInput
    Output = PipelineCreateOutput
    ownership = Ownership(
        changes={
            "clone_url": "the repository: made by repo.create in this run, or owned by its "
            "catalog entity's team (the service named like the repository); others refused",
            "repository": "as clone_url, for the hosted providers",
        },
        creates="a commit adding the pipeline file; a different file already there is refused",
    )
    risk = "low"

    def run(self, ctx: StepContext, data: PipelineCreateInput) -> PipelineCreateOutput:
        if data.provider != "local":
            return _run_hosted(ctx, data)
        repo = _local_repository(ctx, data.clone_url)
        _require_may_change(ctx, repo.name.removesuffix(".git"), local_marker(repo), "clone_url")
        relative = PATHS[data.flavour]
        with tempfile.TemporaryDirectory(prefix="lamplighter-pipeline-") as tmp:
            work = Path(tmp) / "work"
            run_git("clone", "-q", str(repo), str(work))
            branch = _branch(work)
            content = render_pipeline(data, branch=branch)
            target = work / relative
            if target.is_file():
                if target.read_text() != content:
                    raise ActionError(
                        f"the repository already has a different {relative}", field="clone_url"
                    )
                commit = run_git("log", "-1", "--format=%H", "--", relative, cwd=work)
                return PipelineCreateOutput(flavour=data.flavour, path=relative, commit=commit)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            run_git("add", relative, cwd=work)
            message = f"Add the {data.flavour} CI pipeline\n\nLamplighter-Run: {ctx.key}\n"
            run_git("commit", "-q", "-m", message, cwd=work)
            _push(work, branch)
            commit = run_git("rev-parse", "HEAD", cwd=work)
        ctx.log(f"committed {relative} to {repo.name} ({commit[:12]})")
        return PipelineCreateOutput(flavour=data.flavour, path=relative, commit=commit)

    def compensate(
        self, ctx: StepContext, data: PipelineCreateInput, output: PipelineCreateOutput | None
    ) -> None:
        if data.provider != "local":
            _compensate_hosted(ctx, data)
            return
        try:
            repo = _local_repository(ctx, data.clone_url)
        except ActionError:
            return  # the repository is gone (or never was): nothing of ours is left in it
        relative = PATHS[data.flavour]
        with tempfile.TemporaryDirectory(prefix="lamplighter-pipeline-") as tmp:
            work = Path(tmp) / "work"
            run_git("clone", "-q", str(repo), str(work))
            if not (work / relative).is_file():
                return
            if f"Lamplighter-Run: {ctx.key}" not in _last_commit_message(work, relative):
                return  # changed since, or never ours: a person's work is not undone
            run_git("rm", "-q", relative, cwd=work)
            message = f"Remove the {data.flavour} CI pipeline\n\nLamplighter-Undo: {ctx.key}\n"
            run_git("commit", "-q", "-m", message, cwd=work)
            _push(work, _branch(work))
        ctx.log(f"removed {relative} from {repo.name}")
