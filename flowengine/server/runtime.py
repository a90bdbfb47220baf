"""Everything one server process holds: the store, flows, services, and the hub that tells this
process's sockets about their sessions' news.

Built once per process by `create_app`; the sockets and endpoints find it on
`app.state.runtime`. Nothing here outlives the process: what must is in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from .. import frames
from ..actions.backends import close_backend, open_backend
from ..actions.declared import environment_problem
from ..actions.orders import OrderBackend
from ..actions.perform import BackendActions
from ..actions.throttle import Limits, ThrottledActions
from ..handoff import config as handoff_config
from ..handoff.accounts import AccountBook, open_accounts
from ..handoff.service import HandoffService
from ..handoff.webhooks import Webhooks
from ..insights import Insights
from ..language import ir
from ..store import Store, StoreUnavailable, open_store
from ..store.redis_topology import safe as safe_url
from ..store.sqlite import database_path
from .analytics import Analytics
from .config import ServerConfig
from .connection import Follower
from .flows import FlowRegistry, FlowsUnavailable
from .guard import ClientLimits
from .metrics import Metrics
from .sessions import SessionService
from .tasks import Tasks

log = logging.getLogger("flowengine.server")

GC_THRESHOLDS = (50_000, 20, 20)  # `serve`'s collector: young, middle, old (see startup)

SHUTDOWN_FOLD = 5.0  # seconds the insights consumer may take to fold the last events at stop


class Hub:
    """Who on this process follows which session (shopper sockets, agent consoles), fed by the
    store's news (`store.Listener`)."""

    def __init__(self, store: Store, sessions: SessionService, tasks: Tasks) -> None:
        self.store = store
        self.sessions = sessions
        self.tasks = tasks
        # A list, not a set: a session has one follower or a few, and a set of one is 216 bytes
        # of every idle socket.
        self.followers: dict[str, list[Follower]] = {}
        store.set_listener(self)

    async def attach(self, sid: str, follower: Follower) -> None:
        first = sid not in self.followers
        followers = self.followers.setdefault(sid, [])
        if follower not in followers:
            followers.append(follower)
        if first:
            with contextlib.suppress(Exception):  # pub/sub down: reads repair it later
                await self.store.watch(sid)

    async def detach(self, sid: str, follower: Follower, *, left: bool = True) -> None:
        """`left`: the shopper closed it (False: the server is restarting, and the socket
        closed under them: not counted as leaving)."""
        followers = self.followers.get(sid)
        if followers is None:
            return
        with contextlib.suppress(ValueError):
            followers.remove(follower)
        if left and follower.shopper and not any(f.shopper for f in followers):
            await self.sessions.left(sid)
        if not followers:
            del self.followers[sid]
            with contextlib.suppress(Exception):
                await self.store.unwatch(sid)

    def committed(self, sid: str, seq: int, events: tuple[frames.Frame, ...] | None) -> None:
        for follower in list(self.followers.get(sid, ())):
            if follower.own_commit(sid, seq):  # it sends these itself, in its answer
                continue
            self.tasks.spawn(_quietly(follower.news(sid, seq, events)))

    def signalled(self, sid: str, payload: dict[str, Any]) -> None:
        for follower in list(self.followers.get(sid, ())):
            self.tasks.spawn(_quietly(follower.signal(sid, payload)))


async def _quietly(coro: Any) -> None:
    """A follower whose socket or store fails catches up on its next news or reconnect."""
    with contextlib.suppress(Exception):
        await coro


def _accounts(config: ServerConfig) -> AccountBook:
    """The agent accounts: in the same Redis (any topology, the same password) as the store."""
    password = config.redis_options()["password"] if config.redis_url else None
    return open_accounts(config.redis_url, config.agents_file, password)


class Runtime:
    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.time) -> None:
        """`clock` is the wall clock every service reads (tests move it instead of sleeping);
        on Redis, key expiry is Redis's own."""
        self.config = config
        self.clock = clock
        self.store = open_store(
            config.redis_url,
            data_dir=config.data_dir,
            max_connections=config.redis_max_connections,
            clock=clock,
            redis_options=config.redis_options(),
        )
        self.tasks = Tasks()
        self.flows = FlowRegistry(
            config.flows_dir, self.store, version_ttl=config.session_ttl + 3600
        )
        self.metrics = Metrics()
        self.analytics = Analytics(self.store)
        self.insights = Insights(
            self.store,
            self._project,
            retention_days=config.insights_retention_days,
            interval=config.insights_interval,
            clock=clock,
            on_folded=self.metrics.folded,
            keep_log=config.session_ttl,
        )
        # Per client address, on this process: the shoppers' sockets, and the consoles'.
        self.limits = ClientLimits(
            config.ip_rate,
            config.ip_burst,
            config.max_sockets_per_ip,
            sessions_per_minute=config.new_sessions_per_minute,
            cooldown=config.flood_cooldown,
        )
        self.agent_limits = ClientLimits(
            config.ip_rate,
            config.ip_burst,
            config.max_sockets_per_ip,
            cooldown=config.flood_cooldown,
        )
        self.backend: OrderBackend = open_backend(config.backend_settings(), date.today())
        self.sessions = SessionService(
            self.store,
            self.flows,
            ThrottledActions(
                BackendActions(self.backend),
                self.store,
                Limits(
                    config.order_failures_per_order,
                    config.order_failures_per_address,
                    config.order_failure_window,
                ),
            ),
            config,
            self.metrics,
            self.analytics,
            self.tasks,
            clock=clock,
        )
        self.handoff_config = handoff_config.load(config.handoff_config)
        self.webhooks = Webhooks(self.store, self.handoff_config.webhooks, clock=clock)
        self.handoffs = HandoffService(
            self.store,
            self.sessions,
            self.handoff_config,
            _accounts(config),
            self.webhooks,
            ttl=config.session_ttl,
            clock=clock,
        )
        self.sessions.use_handoffs(self.handoffs)
        self.hub = Hub(self.store, self.sessions, self.tasks)
        self._background: list[asyncio.Task[None]] = []

    async def _project(self, version: str | None) -> ir.Project | None:
        """The project a flow version compiled to (None: the current one), for insights."""
        if version is None:
            return self.flows.current
        try:
            return await self.flows.get(version)
        except (FlowsUnavailable, StoreUnavailable):
            return None

    def flooded(self, scope: Any) -> None:
        """A socket's connection was dropped below the app (a ping flood): its address cools
        down as after a frame flood, on the door it came in by."""
        client = scope.get("client")
        ip = client[0] if client else "-"
        path = str(scope.get("path", ""))
        limits = self.agent_limits if path.startswith("/agent") else self.limits
        limits.flooded(ip)
        self.metrics.refused.labels(
            "agent" if limits is self.agent_limits else "shopper", "ping_flood"
        ).inc()

    async def startup(self) -> None:
        project = self.flows.load()  # raises with the validator's errors: never serve broken flows
        if problem := environment_problem(project):  # a declared action's header needs it
            raise ValueError(problem)
        if self.config.redis_url:
            kind = "Redis at " + safe_url(self.config.redis_url)
        elif self.config.data_dir is not None:
            path = database_path(self.config.data_dir).resolve()
            kind = f"the embedded store in {path} (one process; kept across restarts)"
        else:
            kind = "the embedded in-process store (one process; nothing survives a restart)"
        log.info(
            "flowengine serving flows version %s on %s; orders from the %s backend",
            project.version,
            kind,
            self.config.backend_settings().kind,
        )
        try:
            await self.flows.publish()
        except Exception as exc:
            problem = await self.store_problem() or type(exc).__name__
            log.warning(
                "store not usable at start (%s: %s); serving, and retrying per session",
                problem,
                exc,
            )
        self.analytics.start()
        self.insights.start()
        self.handoffs.start()
        self.webhooks.start()
        if self.config.watch_flows:
            self._background.append(asyncio.create_task(self.flows.watch()))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: self.tasks.spawn(self.flows.reload())
            )
        if self.config.freeze_after_startup:
            # What startup built (the compiled flows, their intents index, the modules) lives
            # as long as the process: out of the collector's way, so a full collection walks
            # only what sessions allocate. Its pauses were the p99 of clicks at a person's pace
            # (docs/benchmarks.md). `serve` only: a test process starts many apps.
            gc.collect()
            gc.freeze()
            # Young collections every 50,000 allocations, not 700: a click allocates a few
            # thousand objects that die young (frames, JSON, the engine's run), and the
            # default ran a collection in most clicks (p99 at a person's pace: 16-37 ms before,
            # 8-22 ms after, alternating, docs/benchmarks.md).
            gc.set_threshold(*GC_THRESHOLDS)

    async def store_problem(self) -> str | None:
        """None if the store takes writes; else what is wrong (the Redis store names it:
        auth_failed, tls, read_only, unreachable, error)."""
        readiness = getattr(self.store, "readiness", None)
        if readiness is not None:
            problem: str | None = await readiness()
            return problem
        return None if await self.store.ping() else "unreachable"

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await self.handoffs.stop()
        await self.webhooks.stop()
        await self.tasks.drain()
        await self.analytics.stop()
        await self.insights.stop()
        # What the last flush wrote is folded now (else by the next start, or another
        # instance); a store that does not answer cannot hold the shutdown up.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SHUTDOWN_FOLD):
                await self.insights.catch_up()
        await self.store.close()
        await close_backend(self.backend)
        await self.sessions.declared.aclose()
