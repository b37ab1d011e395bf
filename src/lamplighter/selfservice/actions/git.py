"""``repo.create``: a git repository with an initial commit rendered from a copier skeleton.

The skeleton is a copier template directory under ``selfservice/skeletons/`` (``template`` names
it; paths leaving that directory are refused). It is rendered in-process with ``unsafe=False``, so
a skeleton cannot run tasks, migrations or custom Jinja extensions on the server.

Providers:

- ``local`` (default): a bare repository ``<data_dir>/git/<name>.git``, cloneable by path. It is
  built in a temporary directory beside it and renamed into place, so it appears complete or not
  at all, and two runs racing for one name cannot both win.
- ``github``, ``gitlab``, ``gitea``: the host's REST API with ``LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_*``
  (base URL, token, organisation or group). The files are pushed through the API
  (``git_hosts``).

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

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from lamplighter.core import people
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    Ownership,
    StepContext,
    Unavailable,
    register,
)
from lamplighter.selfservice.actions.git_hosts import (
    DEFAULT_BRANCH,
    HOSTS,
    Provider,
    RepoCreateOutput,
    marker_text,
    name_taken,
    with_marker,
)

SKELETONS_DIR = Path(__file__).resolve().parents[1] / "skeletons"
MARKER_FILE = ".lamplighter-run"
SLUG_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"


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


# -- local provider -----------------------------------------------------------------------------
def local_marker(repo: Path) -> str | None:
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
    if local_marker(repo) == key:
        return _local_output(repo, name)
    raise name_taken(name, f"in {repo.parent}")


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
            raise name_taken(data.name, f"in {root}") from None
    ctx.log(f"created {repo}")
    return _local_output(repo, data.name)


def _compensate_local(ctx: StepContext, name: str) -> None:
    root = local_git_root(ctx.settings)
    repo = root / f"{name}.git"
    if repo.exists() and local_marker(repo) == ctx.key:
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


def _carries_marker(repo: dict[str, Any], key: str) -> bool:
    return marker_text(key) in str(repo.get("description") or "")


def _create_hosted(
    ctx: StepContext, data: RepoCreateInput, files: dict[str, bytes]
) -> RepoCreateOutput:
    api = HOSTS[data.provider](ctx.settings)
    try:
        repo = api.find(data.name)
        if repo is not None and not _carries_marker(repo, ctx.key):
            raise name_taken(data.name, f"on {api.label}")
        if repo is None:
            repo = api.create(data.name, with_marker(data.description, ctx.key))
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
    ownership = Ownership(
        creates="a repository; a name already taken (without this step's mark) is refused, so "
        "another team's repository is never adopted or overwritten",
    )
    risk = "low"

    @classmethod
    def preflight(cls, settings: Settings, data: Mapping[str, Any] | None) -> Unavailable | None:
        provider = (data or {}).get("provider", "local")
        if provider != "local" and (
            not settings.selfservice_git_provider_url
            or settings.selfservice_git_provider_token is None
        ):
            return Unavailable(
                f"no {provider} host is configured",
                "LAMPLIGHTER_SELFSERVICE_GIT_PROVIDER_URL (and _TOKEN)",
            )
        return None

    def check(self, ctx: StepContext, data: RepoCreateInput) -> None:
        if data.provider == "local":
            repo = local_git_root(ctx.settings) / f"{data.name}.git"
            if repo.exists():
                raise ActionError(f"a repository named {data.name!r} exists already", field="name")
        if not people.find_team_by_slug(session=ctx.session, slug=data.owner):
            raise ActionError(f"no team {data.owner!r}", field="owner")

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
