"""Where catalog-info.yaml files come from: a directory tree, or the files of a request.

A source lists the files to start from, reads one (within the size limit) and resolves a
Location's targets relative to the file that names them, never outside what was imported.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin

from lamplighter.catalog.backstage_parse import URL_RE, NotFetched, ParsedFile, Problem, parse_file
from lamplighter.catalog.yaml_cache import DocumentCache

CATALOG_FILE_NAMES = frozenset({"catalog-info.yaml", "catalog-info.yml"})
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__"})


class SourceError(Exception):
    """A file or a Location target that cannot be read; the message is user-facing."""


class MissingTarget(SourceError):
    """A Location target that names no file: Backstage reports it and imports the rest."""


class Source(Protocol):
    root: str
    prefix: str | None  # locations under it that the import no longer finds were deleted

    def initial(self) -> list[str]: ...

    def read(self, name: str, max_bytes: int) -> bytes: ...

    def targets(self, base: str, target: str) -> list[str]: ...


def _has_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


class FileSystemSource:
    """A catalog-info.yaml file, or a directory searched recursively; locations are absolute paths."""

    def __init__(self, path: Path) -> None:
        resolved = path.resolve()
        if not resolved.exists():
            raise SourceError(f"{path} does not exist")
        self.root = str(resolved if resolved.is_dir() else resolved.parent)
        self.prefix: str | None = self.root + os.sep if resolved.is_dir() else None
        if resolved.is_dir():
            found: list[str] = []
            for directory, dirs, files in os.walk(resolved):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
                found.extend(os.path.join(directory, f) for f in files if f in CATALOG_FILE_NAMES)
            self._initial = sorted(found)
        else:
            self._initial = [str(resolved)]

    def initial(self) -> list[str]:
        return list(self._initial)

    def read(self, name: str, max_bytes: int) -> bytes:
        path = Path(name)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise SourceError(f"the file is {size:,} bytes; the limit is {max_bytes:,}")
            data = path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read the file: {exc.strerror or exc}") from exc
        if len(data) > max_bytes:
            raise SourceError(f"the file is over the limit of {max_bytes:,} bytes")
        return data

    def targets(self, base: str, target: str) -> list[str]:
        directory = Path(base).parent
        root = Path(self.root)
        if _has_glob(target):  # a pattern may match nothing (yet); a named file must exist
            try:
                candidates = [p for p in sorted(directory.glob(target)) if p.is_file()]
            except (NotImplementedError, ValueError) as exc:
                raise SourceError(f"target {target!r} is not a relative pattern") from exc
        else:
            candidates = [directory / target]
        names = []
        for candidate in candidates:
            resolved = candidate.resolve()
            if not resolved.is_relative_to(root):
                raise SourceError(f"target {target!r} is outside the imported directory {root}")
            if not resolved.is_file():
                raise MissingTarget(f"target {target!r} does not exist; the rest is imported")
            names.append(str(resolved))
        return names


def normalise_name(name: str) -> str:
    cleaned = posixpath.normpath(name.replace("\\", "/"))
    return cleaned[2:] if cleaned.startswith("./") else cleaned


class MappingSource:
    """Files sent in a request body (name → text); locations are the names as sent."""

    root = "(request)"
    prefix: str | None = None  # nothing outside the files sent is known to be gone

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {normalise_name(name): text for name, text in files.items()}

    def initial(self) -> list[str]:
        return sorted(self.files)

    def read(self, name: str, max_bytes: int) -> bytes:
        try:
            data = self.files[name].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SourceError(f"the file is not valid UTF-8 text ({exc.reason})") from exc
        if len(data) > max_bytes:
            raise SourceError(f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
        return data

    def targets(self, base: str, target: str) -> list[str]:
        joined = normalise_name(posixpath.join(posixpath.dirname(base), target))
        if joined == ".." or joined.startswith("../"):
            raise SourceError(f"target {target!r} is outside the files sent")
        if _has_glob(target):
            return sorted(n for n in self.files if fnmatch.fnmatchcase(n, joined))
        if joined not in self.files:
            raise MissingTarget(f"target {target!r} is not among the files sent")
        return [joined]


class Fetcher(Protocol):
    """Reads URLs the outbound policy allows (``backstage_fetch.UrlFetcher``)."""

    def refusal(self, url: str) -> str | None: ...

    def read(self, url: str) -> bytes: ...


NOT_ASKED = "the import was not asked to fetch (--fetch, with LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST)"


def is_url(text: str) -> bool:
    return URL_RE.match(text) is not None


def read_all(
    source: Source,
    *,
    max_bytes: int,
    name_rules: Mapping[str, str] | None,
    on_file: Callable[[int, int], None] | None = None,
    cache: DocumentCache | None = None,
    fetcher: Fetcher | None = None,
) -> list[ParsedFile]:
    """Parse every file, following Location targets; ``on_file(done, known)`` reports progress;
    ``cache`` supplies the documents of files read before; ``fetcher`` reads URL targets and
    substitutions (without one they are kept as references, with a warning)."""
    queue = deque(source.initial())
    seen = set(queue)
    parsed: list[ParsedFile] = []

    def url_of(base: str, target: str) -> str | None:
        if is_url(target):
            return target
        return urljoin(base, target) if is_url(base) else None

    def read_url(url: str) -> bytes:
        if fetcher is None:
            raise NotFetched(NOT_ASKED)
        return fetcher.read(url)

    while queue:
        name = queue.popleft()
        try:
            data = read_url(name) if is_url(name) else source.read(name, max_bytes)
        except (SourceError, NotFetched) as exc:
            result = ParsedFile(name=name, problems=[Problem(name, None, "file", str(exc))])
        else:

            def substitute(target: str, base: str = name) -> bytes:
                url = url_of(base, target)
                if url is not None:
                    return read_url(url)
                found = source.targets(base, target)
                if len(found) != 1:
                    raise SourceError(f"{target!r} names {len(found)} files, not one")
                return source.read(found[0], max_bytes)

            result = parse_file(
                name, data, name_rules=name_rules, cache=cache, substitute=substitute
            )
        for index, where, target in result.targets:
            url = url_of(name, target)
            if url is not None:
                reason = NOT_ASKED if fetcher is None else fetcher.refusal(url)
                if reason is not None:
                    result.warnings.append(
                        Problem(name, index, where, f"URL target {url!r} is not followed: {reason}")
                    )
                    continue
                names = [url]
            else:
                try:
                    names = source.targets(name, target)
                except MissingTarget as exc:
                    result.warnings.append(Problem(name, index, where, str(exc)))
                    continue
                except SourceError as exc:  # outside what was imported: refused
                    result.problems.append(Problem(name, index, where, str(exc)))
                    continue
            for found in names:
                if found not in seen:
                    seen.add(found)
                    queue.append(found)
        parsed.append(result)
        if on_file is not None:
            on_file(len(parsed), len(seen))
    return parsed
