"""Flow versions: the current one, and every version a session in flight is pinned to.

A session records the version it started on. Versions are kept in the store as their sources,
so any instance can compile the one a session needs; a reload validates first, and a broken edit
is refused (the validator's errors go to the log) while the old flows keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..language import LoadResult, ir, load_project
from ..language.checks import missing_translations
from ..language.project import PROJECT_FILE, compile_sources
from ..store import Store

log = logging.getLogger("flowengine.flows")

CACHE_SIZE = 16
SHOWN_STEPS = 5  # step ids named per missing-translation line
TOUCH_EVERY = 60.0


# `flowengine serve` compiles the flows to validate them before it opens a port; the app it then
# builds in the same process (one worker) takes that result instead of compiling the same files
# again (1.3 s of every start with the shipped flows). Taken once: a reload compiles afresh, and
# `--workers N` processes start empty and compile their own.
_precompiled: dict[Path, LoadResult] = {}


def precompiled(flows_dir: str, result: LoadResult) -> None:
    """The flows in `flows_dir`, just compiled in this process: the next `load` of that
    directory uses them."""
    _precompiled[Path(flows_dir).resolve()] = result


class FlowsUnavailable(Exception):
    """A session's flow version is in no cache and not in the store."""


class FlowRegistry:
    def __init__(self, flows_dir: str, store: Store, version_ttl: float) -> None:
        self.flows_dir = flows_dir
        self.store = store
        self.version_ttl = version_ttl
        self.current: ir.Project | None = None
        self._bundle: dict[str, Any] = {}
        self._cache: OrderedDict[str, ir.Project] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._mtimes: dict[str, float] = {}

    def load(self) -> ir.Project:
        """Compile the flows directory; raise ValueError with the diagnostics when broken."""
        result = _precompiled.pop(Path(self.flows_dir).resolve(), None)
        if result is None:
            result = load_project([self.flows_dir])
        if not result.ok or result.project is None:
            raise ValueError(result.render(include_warnings=False) or "no flows found")
        project = result.project
        project_file = next((n for n in result.texts if Path(n).name == PROJECT_FILE), None)
        self._bundle = {
            "flows": {n: t for n, t in result.texts.items() if n != project_file},
            "project": [project_file, result.texts[project_file]] if project_file else None,
        }
        self.current = project
        self._remember(project)
        self._mtimes = self._scan()
        log_missing_translations(project)
        return project

    async def publish(self, *, unless_recent: bool = False) -> None:
        """Keep the current version's sources where every instance can find them (with
        `unless_recent`, at most once a minute: new sessions call this)."""
        assert self.current is not None
        version = self.current.version
        if unless_recent and time.monotonic() - self._touched.get(version, 0.0) < TOUCH_EVERY:
            return
        await self.store.put_version(version, self._bundle, self.version_ttl)
        self._touched[version] = time.monotonic()

    async def reload(self) -> bool:
        """Validate and switch to the flows on disk; on errors keep serving the old ones."""
        old = self.current
        try:
            project = self.load()
        except ValueError as exc:
            log.error(
                "flow reload refused; still serving version %s:\n%s",
                old.version if old else "-",
                exc,
            )
            if old is not None:
                self.current = old
            return False
        try:
            await self.publish()
        except Exception:  # the store may be down: retried when a session starts
            log.warning("could not store flow version %s yet", project.version)
        log.info(
            "flows reloaded: version %s (was %s)", project.version, old.version if old else "-"
        )
        return True

    def _remember(self, project: ir.Project) -> None:
        self._cache[project.version] = project
        self._cache.move_to_end(project.version)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def get(self, version: str) -> ir.Project:
        project = self._cache.get(version)
        if project is None:
            bundle = await self.store.get_version(version)
            if bundle is None:
                raise FlowsUnavailable(version)
            settings = tuple(bundle["project"]) if bundle.get("project") else None
            result = compile_sources(bundle["flows"], settings)
            if result.project is None or result.project.version != version:
                raise FlowsUnavailable(version)
            project = result.project
            self._remember(project)
        now = time.monotonic()
        if now - self._touched.get(version, 0.0) > TOUCH_EVERY:
            self._touched[version] = now
            if self.current is not None and version == self.current.version:
                await self.store.put_version(version, self._bundle, self.version_ttl)
            else:
                await self.store.touch_version(version, self.version_ttl)
        return project

    def _scan(self) -> dict[str, float]:
        root = Path(self.flows_dir)
        return {str(p): p.stat().st_mtime for p in root.glob("*.y*ml")} if root.is_dir() else {}

    async def watch(self, every: float = 2.0) -> None:
        """Reload when a flow file changes (for `serve --watch`)."""
        while True:
            await asyncio.sleep(every)
            if self._scan() != self._mtimes:
                self._mtimes = self._scan()
                await self.reload()


def log_missing_translations(project: ir.Project) -> None:
    """One warning per flow and locale whose texts lack that locale (shoppers reading it get
    the default locale's text there): at start and at each reload."""
    for (flow, locale), steps in missing_translations(project).items():
        shown = ", ".join(steps[:SHOWN_STEPS]) + (", ..." if len(steps) > SHOWN_STEPS else "")
        log.warning(
            "flow %s: %d step(s) without a '%s' translation (%s); shoppers reading %s see "
            "the default locale there",
            flow,
            len(steps),
            locale,
            shown,
            locale,
        )
