"""Parsed YAML documents kept between imports of one directory, by the digest of each file's bytes.

Reading YAML is most of what re-importing an unchanged catalog costs, and its result depends on
nothing but the bytes and the loader: the documents of a file whose bytes are unchanged are read
back from the cache instead (about ten times faster); everything after that — checking the
documents, resolving references, comparing with the database — runs exactly as on a first import.

One cache file per imported directory, under ``<data_dir>/cache/``, holding the files seen by the
last import (so it never grows beyond the catalog it mirrors). It is keyed by the loader's own
source and PyYAML's version, so a new loader never reads an old cache; a file that is missing,
unreadable or from another version is simply ignored, and any of them may be deleted at any time.
Only files read without a problem are kept, and only documents JSON stores exactly (checked by
reading them back): a file with a YAML timestamp, binary, a set, a non-string key or an infinite
number is read again each time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from lamplighter.catalog import backstage_yaml
from lamplighter.catalog.backstage_parse import Problem

Loaded = tuple[list[Any], list[Problem]]


def _loader_version() -> str:
    source = Path(backstage_yaml.__file__).read_bytes()
    return f"{yaml.__version__}:{hashlib.sha256(source).hexdigest()}"


class DocumentCache:
    """Documents by file digest: read from ``path`` at start, written back by :meth:`save`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = _loader_version()
        self._old: dict[str, Any] = self._read()
        self._new: dict[str, bytes] = {}  # digest → the documents as JSON
        self.hits = 0

    def _read(self) -> dict[str, Any]:
        try:
            content = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        if not isinstance(content, dict) or content.get("version") != self.version:
            return {}
        entries = content.get("entries")
        return entries if isinstance(entries, dict) else {}

    def load(self, data: bytes, read: Callable[[], Loaded]) -> Loaded:
        """The file's documents: from the cache when its bytes were seen, else ``read()``."""
        digest = hashlib.sha256(data).hexdigest()
        documents = self._old.pop(digest, None)
        if isinstance(documents, list):
            self._new[digest] = orjson.dumps(documents)
            self.hits += 1
            return documents, []
        documents, problems = read()
        if not problems:
            try:  # as JSON now: the documents are checked (and may be changed) later
                text = orjson.dumps(documents)
                if orjson.loads(text) == documents:
                    self._new[digest] = text
            except TypeError:
                pass  # a value JSON cannot hold (a date, bytes, a number key): read it again
        return documents, problems

    def save(self) -> None:
        """Keep what this import saw (written whole, then renamed into place); never fails."""
        entries = b",".join(b'"%s":%s' % (d.encode(), text) for d, text in self._new.items())
        body = b'{"version":%s,"entries":{%s}}' % (orjson.dumps(self.version), entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(body)
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a cache that cannot be written costs speed, not correctness


def cache_for(data_dir: Path, root: str) -> DocumentCache:
    """The cache of imports of ``root`` (a directory or one file)."""
    name = hashlib.sha256(root.encode()).hexdigest()[:24]
    return DocumentCache(data_dir / "cache" / f"catalog-yaml-{name}.json")
