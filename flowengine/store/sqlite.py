"""The durable embedded store: one process, everything in a local SQLite file, the same contract
as the memory and Redis stores.

One box keeps its sessions, transcripts, action ids, flow versions, handoff queue, presence,
tokens, notes, tickets, webhook outbox and analytics across restarts in `<data dir>/flowengine.db`.

- **One thread owns the file.** Every operation is one function run on a single worker thread
  (`run_in_executor` on a one-thread executor), so the event loop never waits on the disk, and
  operations never interleave: a commit's compare-and-set on `rev`, a claim's status check,
  a `once` are atomic because nothing else touches the connection between its read and write.
- **Acknowledged means committed.** `commit` returns after its transaction has committed; nothing
  is batched across callers. WAL with `synchronous=NORMAL`: a committed transaction is in the
  WAL (the OS's page cache) before `commit` returns, so it survives the process being killed
  (SIGKILL, a crash, an OOM kill); a power loss or kernel crash may lose the last transactions
  since the last checkpoint, never corrupt the file. `synchronous=FULL` would fsync every click.
- **Expiry by the clock** the store is given, as the memory store: an expired record is never
  read; `sweep` deletes them, scheduled on the worker thread at most once a minute (by that
  clock) after a write, never awaited by the writer.
- **Notifications stay in memory**: the listener hears of this process's commits and signals
  directly (the file is one process's: another process would not hear them, which is why
  `flowengine serve --workers 2` needs Redis). A lock on the data dir keeps a second process off.
- **Schema versioned** by `PRAGMA user_version`; `MIGRATIONS[n]` takes a file from version n to
  n + 1, each in its own transaction, at open.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .. import jsontext
from .base import ChatView, Commit, Fold, Listener, SessionRecord, StoreUnavailable
from .group_commit import GroupCommit

FILENAME = "flowengine.db"
MAX_EVENTS = 100_000  # analytics events kept, as the memory store
MAX_WEBHOOK_LOG = 1000
SWEEP_EVERY = 60.0  # seconds (by the store's clock) between sweeps of expired records
SWEEP_BATCH = 2000  # expired sessions deleted per transaction (the worker stays responsive)

T = TypeVar("T")


class DataDirError(Exception):
    """The data dir cannot hold the store (not a directory, not writable, a damaged or newer
    file, in use by another process). The message names the path and what to do."""


def database_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / FILENAME


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Statements separated by `;`, in the caller's transaction (`executescript` commits)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE sessions (
            sid TEXT PRIMARY KEY, state TEXT NOT NULL, rev INTEGER NOT NULL,
            seq INTEGER NOT NULL, updated_at REAL NOT NULL, expires REAL NOT NULL);
        CREATE INDEX sessions_expires ON sessions (expires);
        CREATE TABLE transcript (
            sid TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
            PRIMARY KEY (sid, seq)) WITHOUT ROWID;
        CREATE TABLE actions (
            sid TEXT NOT NULL, action_id TEXT NOT NULL,
            PRIMARY KEY (sid, action_id)) WITHOUT ROWID;
        CREATE TABLE versions (
            version TEXT PRIMARY KEY, bundle TEXT NOT NULL, expires REAL NOT NULL);
        CREATE TABLE events (n INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
        CREATE TABLE handoffs (
            sid TEXT PRIMARY KEY, record TEXT NOT NULL, status TEXT NOT NULL, team TEXT,
            agent TEXT, score REAL, expires REAL NOT NULL);
        CREATE INDEX handoffs_queue ON handoffs (team, score) WHERE score IS NOT NULL;
        CREATE INDEX handoffs_agent ON handoffs (agent) WHERE status = 'assigned';
        CREATE TABLE presence (agent TEXT PRIMARY KEY, info TEXT NOT NULL, seen REAL NOT NULL);
        CREATE TABLE tokens (hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires REAL NOT NULL);
        CREATE TABLE failures (key TEXT PRIMARY KEY, count INTEGER NOT NULL, until REAL NOT NULL);
        CREATE TABLE once_keys (key TEXT PRIMARY KEY, until REAL NOT NULL);
        CREATE TABLE notes (
            n INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL, note TEXT NOT NULL,
            expires REAL NOT NULL);
        CREATE INDEX notes_sid ON notes (sid);
        CREATE TABLE tickets (
            n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, ticket TEXT NOT NULL,
            packet TEXT);
        CREATE TABLE outbox (
            n INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, id TEXT,
            inflight INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE webhook_log (n INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    """Insights: the counters (day, field -> value) and each consumer's place in `events`
    (the last `n` folded), written in one transaction."""
    _script(
        db,
        """
        CREATE TABLE insight_counts (
            day TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL,
            PRIMARY KEY (day, field)) WITHOUT ROWID;
        CREATE TABLE consumers (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
        """,
    )


# MIGRATIONS[n] takes a file at user_version n to n + 1 (0: a new, empty file). Append only.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def _events_of(raws: list[str]) -> list[Any]:
    """Stored events parsed (in one call: several times faster than one each); a row that is
    not JSON becomes None, which the insights fold counts as nothing."""
    try:
        events: list[Any] = _load("[" + ",".join(raws) + "]")
        if len(events) == len(raws):
            return events
    except ValueError:
        pass
    out: list[Any] = []
    for raw in raws:
        try:
            out.append(_load(raw))
        except ValueError:
            out.append(None)
    return out


def _dump(value: Any) -> str:
    return jsontext.dumps(value)


_load = jsontext.loads


class SqliteStore:
    kind = "sqlite"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        *,
        read_only: bool = False,
    ) -> None:
        """Open (or create) the store in `data_dir`, created if missing; `DataDirError` when it
        cannot be used. `read_only`: open an existing store to read it beside the server that
        holds it (`flowengine report`): no lock, no write, no migration."""
        self.read_only = read_only
        self.data_dir = Path(data_dir)
        self.path = database_path(data_dir)
        self._clock = clock
        self._listener: Listener | None = None
        self._watched: set[str] = set()
        self._next_sweep = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="flowengine-sqlite")
        self._commits: GroupCommit[Callable[[sqlite3.Connection], Commit], Commit] = GroupCommit(
            self._write_commits
        )
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.submit(self._close).result()
            self._executor.shutdown()
            raise

    # -- the worker thread -----------------------------------------------------------------
    def _open(self) -> None:
        if self.read_only:
            return self._open_read_only()
        where = self.data_dir
        try:
            where.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise DataDirError(f"{where} is not a directory (a file is in the way)") from None
        except OSError as e:
            raise DataDirError(f"cannot create the data directory {where}: {e.strerror}") from None
        if not where.is_dir():
            raise DataDirError(f"{where} is not a directory (a file is in the way)")
        try:
            self._lock = os.open(where / (FILENAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise DataDirError(
                f"cannot write in the data directory {where}: {e.strerror}"
            ) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataDirError(
                f"{self.path} is in use by another flowengine process; one process per data "
                "directory (several need --redis-url)"
            ) from None
        try:
            db = self._db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=OFF")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise DataDirError(
                    f"{self.path} was written by a newer flowengine (schema {version}; this one "
                    f"knows up to {SCHEMA_VERSION}): upgrade flowengine, or restore a backup"
                )
            for n in range(version, SCHEMA_VERSION):
                db.execute("BEGIN IMMEDIATE")
                MIGRATIONS[n](db)
                db.execute(f"PRAGMA user_version={n + 1}")
                db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")  # a write now, so an unwritable file fails at start
            db.execute("INSERT OR REPLACE INTO meta VALUES ('opened_at', ?)", (str(self._clock()),))
            db.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise DataDirError(
                f"{self.path} cannot be used ({e}): if it is damaged or not a flowengine store, "
                "move it away (a new one is created) or restore a backup"
            ) from None

    def _open_read_only(self) -> None:
        if not self.path.is_file():
            raise DataDirError(
                f"no flowengine store at {self.path} (`flowengine serve --data-dir "
                f"{self.data_dir}` creates it)"
            )
        try:
            db = self._db = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None
            )
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise DataDirError(f"{self.path} cannot be read ({e})") from None
        if version != SCHEMA_VERSION:
            raise DataDirError(
                f"{self.path} is at schema {version}, this flowengine reads {SCHEMA_VERSION}: "
                + (
                    "run `flowengine serve` of this version on it once to upgrade it"
                    if version < SCHEMA_VERSION
                    else "upgrade flowengine"
                )
            )

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()  # the last connection checkpoints the WAL into the file
            self._db = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction (on the worker thread)."""
        db = self._db
        if db is None:
            raise StoreUnavailable("the store is closed")
        try:
            db.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result
        except sqlite3.Error as e:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise StoreUnavailable(f"{self.path}: {e}") from e

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._tx, fn)
        except RuntimeError as e:  # the executor was shut down
            raise StoreUnavailable("the store is closed") from e

    def _wrote(self, at: float) -> None:
        """After a write: sweep expired records if it is time (queued behind it, not awaited)."""
        if at >= self._next_sweep:
            self._next_sweep = at + SWEEP_EVERY
            with contextlib.suppress(RuntimeError):
                self._executor.submit(self._sweep_quietly, at)

    def _sweep_quietly(self, at: float) -> None:
        with contextlib.suppress(StoreUnavailable):
            while self._tx(lambda db: _sweep(db, at)) >= SWEEP_BATCH:
                pass

    async def sweep(self) -> int:
        """Delete what has expired by now (a batch of sessions at most); how many sessions."""
        at = self._clock()
        return await self._run(lambda db: _sweep(db, at))

    # -- sessions (SessionStore) -----------------------------------------------------------
    async def load(self, sid: str, action_id: str | None = None) -> SessionRecord | None:
        at = self._clock()

        def read(db: sqlite3.Connection) -> SessionRecord | None:
            row = db.execute(
                "SELECT state, rev, seq, updated_at FROM sessions WHERE sid = ? AND expires > ?",
                (sid, at),
            ).fetchone()
            if row is None:
                return None
            applied = action_id is not None and _applied(db, sid, action_id)
            return SessionRecord(sid, _load(row[0]), row[1], row[2], row[3], applied)

        return await self._run(read)

    async def commit(
        self,
        sid: str,
        rev: int,
        state: dict[str, Any],
        events: list[dict[str, Any]],
        *,
        action_id: str | None,
        ttl: float,
        now: float,
    ) -> Commit:
        at = self._clock()
        state_json = _dump(state)
        rows = [_dump(e) for e in events]

        def write(db: sqlite3.Connection) -> Commit:
            row = db.execute(
                "SELECT rev, seq FROM sessions WHERE sid = ? AND expires > ?", (sid, at)
            ).fetchone()
            if row is not None and action_id and _applied(db, sid, action_id):
                return Commit("duplicate", row[0], row[1])
            if rev == 0:
                if row is not None:
                    return Commit("conflict", row[0], row[1])
                _drop_sessions(db, [sid])  # an expired one's transcript and action ids
                old_rev, old_seq = 0, 0
            elif row is None:
                return Commit("missing")
            elif row[0] != rev:
                return Commit("conflict", row[0], row[1])
            else:
                old_rev, old_seq = row
            if events and events[0].get("seq", old_seq + 1) != old_seq + 1:
                return Commit("conflict", old_rev, old_seq)  # made on a stale transcript
            new_rev, new_seq = old_rev + 1, old_seq + len(rows)
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE SET "
                "state = excluded.state, rev = excluded.rev, seq = excluded.seq, "
                "updated_at = excluded.updated_at, expires = excluded.expires",
                (sid, state_json, new_rev, new_seq, now, at + ttl),
            )
            db.executemany(
                "INSERT INTO transcript VALUES (?, ?, ?)",
                [(sid, old_seq + i, e) for i, e in enumerate(rows, 1)],
            )
            if action_id:
                db.execute("INSERT INTO actions VALUES (?, ?)", (sid, action_id))
            return Commit("ok", new_rev, new_seq)

        c = await self._commits.submit(write)
        if c.outcome == "ok":
            self._wrote(at)
            if events and sid in self._watched and self._listener is not None:
                self._listener.committed(sid, c.seq, tuple(copy.deepcopy(events)))
        return c

    async def _write_commits(
        self, batch: Sequence[Callable[[sqlite3.Connection], Commit]]
    ) -> list[Commit]:
        """A group commit (store/group_commit.py): the commits of one loop turn in one
        transaction, one executor hop and one WAL sync; each checks its own revision, so a
        conflict writes nothing of that session and leaves the others be. An SQLite error fails
        the transaction, so every commit in it (StoreUnavailable)."""
        return await self._run(lambda db: [write(db) for write in batch])

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        at = self._clock()
        return await self._run(lambda db: _replay(db, sid, max(after_seq, 0), limit, at))

    async def put_version(self, version: str, bundle: dict[str, Any], ttl: float) -> None:
        at, raw = self._clock(), _dump(bundle)
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (version, raw, at + ttl)
            )
        )
        self._wrote(at)

    async def get_version(self, version: str) -> dict[str, Any] | None:
        at = self._clock()
        row = await self._run(
            lambda db: db.execute(
                "SELECT bundle FROM versions WHERE version = ? AND expires > ?", (version, at)
            ).fetchone()
        )
        return _load(row[0]) if row is not None else None

    async def touch_version(self, version: str, ttl: float) -> None:
        at = self._clock()
        await self._run(
            lambda db: db.execute(
                "UPDATE versions SET expires = ? WHERE version = ?", (at + ttl, version)
            )
        )

    async def append_events(self, events: list[dict[str, Any]]) -> None:
        rows = [(_dump(e),) for e in events]

        def write(db: sqlite3.Connection) -> None:
            cur = db.executemany("INSERT INTO events (event) VALUES (?)", rows)
            last = db.execute("SELECT max(n) FROM events").fetchone()[0]
            if last is not None and cur.rowcount:
                db.execute("DELETE FROM events WHERE n <= ?", (last - MAX_EVENTS,))

        await self._run(write)

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        return await self._run(lambda db: _newest(db, "events", "event", count))

    # -- insights (InsightsStore) ----------------------------------------------------------
    async def consume_events(
        self, fold: Fold, *, consumer: str, count: int = 500, idle: float = 60.0,
        retention_days: int = 400,
    ) -> int:  # fmt: skip
        # One consumer cursor for the file (one process): `consumer` names nothing here.
        def write(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT cursor FROM consumers WHERE name = 'insights'").fetchone()
            cursor = row[0] if row else 0
            rows = db.execute(
                "SELECT n, event FROM events WHERE n > ? ORDER BY n LIMIT ?", (cursor, count)
            ).fetchall()
            if not rows:
                return 0
            batch = _events_of([raw for _, raw in rows])
            db.executemany(
                "INSERT INTO insight_counts VALUES (?, ?, ?) ON CONFLICT (day, field) "
                "DO UPDATE SET value = value + excluded.value",
                [(day, f, n) for (day, f), n in fold(batch).items()],
            )
            db.execute(
                "INSERT INTO consumers VALUES ('insights', ?) ON CONFLICT (name) "
                "DO UPDATE SET cursor = excluded.cursor",
                (rows[-1][0],),
            )
            return len(rows)

        return await self._run(write)

    async def insight_counts(self, days: list[str]) -> dict[str, dict[str, int]]:
        def read(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for day in days:
                rows = db.execute(
                    "SELECT field, value FROM insight_counts WHERE day = ?", (day,)
                ).fetchall()
                if rows:
                    out[day] = dict(rows)
            return out

        return await self._run(read)

    async def prune_insights(self, before: str) -> int:
        return await self._run(
            lambda db: db.execute("DELETE FROM insight_counts WHERE day < ?", (before,)).rowcount
        )

    async def forget_log(self, before: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT cursor FROM consumers WHERE name = 'insights'").fetchone()
            return int(
                db.execute(
                    "DELETE FROM events WHERE n <= ? AND coalesce(CASE WHEN json_valid(event) "
                    "THEN CAST(json_extract(event, '$.at') AS REAL) END, 0) < ?",
                    (row[0] if row else 0, before),
                ).rowcount
            )

        return await self._run(write)

    async def watch(self, sid: str) -> None:
        self._watched.add(sid)

    async def unwatch(self, sid: str) -> None:
        self._watched.discard(sid)

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    async def ping(self) -> bool:
        try:
            await self._run(lambda db: db.execute("SELECT 1").fetchone())
        except StoreUnavailable:
            return False
        return True

    async def readiness(self) -> str | None:
        """None when the file takes a write; else `read_only` or `error`."""
        at = str(self._clock())
        try:
            await self._run(
                lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES ('ready_at', ?)", (at,))
            )
        except StoreUnavailable as e:
            return "read_only" if "readonly" in str(e) else "error"
        return None

    async def close(self) -> None:
        await self._commits.drain()  # commits under way are answered first
        with contextlib.suppress(RuntimeError):
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    # -- handoffs (HandoffStore) -----------------------------------------------------------
    async def put_handoff(self, sid: str, record: dict[str, Any], score: float, ttl: float) -> bool:
        at = self._clock()
        new = {**record, "status": "queued", "agent": None, "score": score}

        def write(db: sqlite3.Connection) -> bool:
            current = _handoff(db, sid, at)
            if current is not None and current["status"] != "closed":
                return False
            _put_handoff(db, sid, new, score, at + ttl)
            return True

        put = await self._run(write)
        self._wrote(at)
        return put

    async def get_handoff(self, sid: str) -> dict[str, Any] | None:
        at = self._clock()
        return await self._run(lambda db: _handoff(db, sid, at))

    async def transition(
        self,
        sid: str,
        allowed: tuple[str, ...],
        changes: dict[str, Any],
        score: float | None,
        ttl: float,
        teams: tuple[str, ...] | None = None,
        agent: str | None = None,
    ) -> dict[str, Any] | None:
        at = self._clock()
        changes = copy.deepcopy(changes)

        def write(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT record, score FROM handoffs WHERE sid = ? AND expires > ?", (sid, at)
            ).fetchone()
            if row is None:
                return None
            record = _load(row[0])
            if record["status"] not in allowed:
                return None
            if teams is not None and record.get("team") not in teams:
                return None
            if agent is not None and record.get("agent") != agent:
                return None
            record = {**record, **changes}
            queued_at: float | None = None  # in the queue with this score, or not in it
            if record["status"] == "queued":
                queued_at = row[1]
                if score is not None:
                    queued_at = record["score"] = score
            _put_handoff(db, sid, record, queued_at, at + ttl)
            return record

        return await self._run(write)

    async def queue(self, team: str) -> list[dict[str, Any]]:
        at = self._clock()
        rows = await self._run(
            lambda db: db.execute(
                "SELECT record FROM handoffs WHERE team = ? AND score IS NOT NULL "
                "AND status = 'queued' AND expires > ? ORDER BY score, rowid",
                (team, at),
            ).fetchall()
        )
        return [_load(r[0]) for r in rows]

    async def agent_chats(self, agent: str) -> list[dict[str, Any]]:
        at = self._clock()
        rows = await self._run(
            lambda db: db.execute(
                "SELECT record FROM handoffs WHERE agent = ? AND status = 'assigned' "
                "AND expires > ? ORDER BY rowid",
                (agent, at),
            ).fetchall()
        )
        return [_load(r[0]) for r in rows]

    async def heartbeat(self, agent: str, info: dict[str, Any], now: float) -> None:
        raw = _dump(info)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO presence VALUES (?, ?, ?) ON CONFLICT (agent) DO UPDATE SET "
                "info = excluded.info, seen = excluded.seen",
                (agent, raw, now),
            )
        )

    async def online(self, now: float, window: float = 30.0) -> dict[str, dict[str, Any]]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT agent, info FROM presence WHERE ? - seen <= ? ORDER BY rowid",
                (now, window),
            ).fetchall()
        )
        return {a: _load(info) for a, info in rows}

    async def presence(self) -> dict[str, float]:
        rows = await self._run(
            lambda db: db.execute("SELECT agent, seen FROM presence ORDER BY rowid").fetchall()
        )
        return {a: seen for a, seen in rows}

    async def leave(self, agent: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM presence WHERE agent = ?", (agent,)))

    async def once(self, key: str, ttl: float) -> bool:
        at = self._clock()

        def write(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT until FROM once_keys WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > at:
                return False
            db.execute("INSERT OR REPLACE INTO once_keys VALUES (?, ?)", (key, at + ttl))
            return True

        first = await self._run(write)
        self._wrote(at)
        return first

    async def forget(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM once_keys WHERE key = ?", (key,)))

    async def put_ticket(self, key: str, ticket: dict[str, Any]) -> None:
        packet = _dump(ticket["packet"]) if "packet" in ticket else None
        rest = _dump({k: v for k, v in ticket.items() if k != "packet"})
        await self._run(
            lambda db: db.execute(
                "INSERT INTO tickets (key, ticket, packet) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET ticket = excluded.ticket, packet = excluded.packet",
                (key, rest, packet),
            )
        )

    async def tickets(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT ticket FROM tickets ORDER BY n DESC LIMIT ?", (limit,)
            ).fetchall()
        )
        return [_load(r[0]) for r in rows]

    async def get_ticket(self, key: str) -> dict[str, Any] | None:
        return await self._run(lambda db: _ticket(db, key))

    async def update_ticket(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        changes = copy.deepcopy(changes)

        def write(db: sqlite3.Connection) -> dict[str, Any] | None:
            ticket = _ticket(db, key)
            if ticket is None:
                return None
            ticket = {**ticket, **changes}
            packet = _dump(ticket["packet"]) if "packet" in ticket else None
            rest = _dump({k: v for k, v in ticket.items() if k != "packet"})
            db.execute(
                "UPDATE tickets SET ticket = ?, packet = ? WHERE key = ?", (rest, packet, key)
            )
            return ticket

        return await self._run(write)

    async def failures(self, keys: list[str]) -> list[int]:
        at = self._clock()

        def read(db: sqlite3.Connection) -> list[int]:
            counts = []
            for k in keys:
                row = db.execute(
                    "SELECT count FROM failures WHERE key = ? AND until > ?", (k, at)
                ).fetchone()
                counts.append(row[0] if row is not None else 0)
            return counts

        return await self._run(read)

    async def add_failure(self, keys: list[str], window: float) -> list[int]:
        at = self._clock()

        def count(db: sqlite3.Connection) -> list[int]:
            return [
                db.execute(
                    "INSERT INTO failures VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
                    "count = CASE WHEN until > ? THEN count + 1 ELSE 1 END, "
                    "until = CASE WHEN until > ? THEN until ELSE excluded.until END "
                    "RETURNING count",
                    (k, at + window, at, at),
                ).fetchone()[0]
                for k in keys
            ]

        counts = await self._run(count)
        self._wrote(at)
        return counts

    async def forgive(self, keys: list[str]) -> None:
        at = self._clock()
        await self._run(
            lambda db: db.executemany(
                "UPDATE failures SET count = count - 1 WHERE key = ? AND until > ? AND count > 0",
                [(k, at) for k in keys],
            )
        )

    async def put_token(self, token_hash: str, username: str, ttl: float) -> None:
        at = self._clock()
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?)", (token_hash, username, at + ttl)
            )
        )
        self._wrote(at)

    async def get_token(self, token_hash: str) -> str | None:
        at = self._clock()
        row = await self._run(
            lambda db: db.execute(
                "SELECT username FROM tokens WHERE hash = ? AND expires > ?", (token_hash, at)
            ).fetchone()
        )
        return row[0] if row is not None else None

    async def del_token(self, token_hash: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,)))

    async def add_note(self, sid: str, note: dict[str, Any], ttl: float) -> None:
        at, raw = self._clock(), _dump(note)

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO notes (sid, note, expires) VALUES (?, ?, ?)", (sid, raw, 0))
            db.execute("UPDATE notes SET expires = ? WHERE sid = ?", (at + ttl, sid))  # as Redis

        await self._run(write)
        self._wrote(at)

    async def notes(self, sid: str) -> list[dict[str, Any]]:
        at = self._clock()
        return await self._run(lambda db: _notes(db, sid, at))

    async def chat_view(self, sid: str, limit: int = 5000) -> ChatView:
        at = self._clock()

        def read(db: sqlite3.Connection) -> ChatView:
            row = db.execute(
                "SELECT state, rev, seq, updated_at FROM sessions WHERE sid = ? AND expires > ?",
                (sid, at),
            ).fetchone()
            session = None if row is None else SessionRecord(sid, _load(row[0]), *row[1:])
            return ChatView(
                session,
                _replay(db, sid, 0, limit, at),
                _notes(db, sid, at),
                _handoff(db, sid, at),
            )

        return await self._run(read)

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if sid in self._watched and self._listener is not None:
            self._listener.signalled(sid, copy.deepcopy(payload))

    async def push_webhook(self, item: dict[str, Any]) -> None:
        raw, wid = _dump(item), item.get("id")
        await self._run(
            lambda db: db.execute("INSERT INTO outbox (item, id) VALUES (?, ?)", (raw, wid))
        )

    async def take_webhook(self) -> dict[str, Any] | None:
        def write(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT n, item FROM outbox WHERE inflight = 0 ORDER BY n LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE outbox SET inflight = 1 WHERE n = ?", (row[0],))
            return dict(_load(row[1]))

        return await self._run(write)

    async def done_webhook(self, item: dict[str, Any]) -> None:
        wid = item.get("id")
        await self._run(
            lambda db: db.execute("DELETE FROM outbox WHERE inflight = 1 AND id IS ?", (wid,))
        )

    async def recover_webhooks(self) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("UPDATE outbox SET inflight = 0 WHERE inflight = 1").rowcount

        return await self._run(write)

    async def log_webhook(self, entry: dict[str, Any]) -> None:
        raw = _dump(entry)

        def write(db: sqlite3.Connection) -> None:
            n = db.execute("INSERT INTO webhook_log (entry) VALUES (?)", (raw,)).lastrowid
            if n is not None and n > MAX_WEBHOOK_LOG:
                db.execute("DELETE FROM webhook_log WHERE n <= ?", (n - MAX_WEBHOOK_LOG,))

        await self._run(write)

    async def webhook_log(self, count: int = 50) -> list[dict[str, Any]]:
        return await self._run(lambda db: _newest(db, "webhook_log", "entry", count))


# -- queries run on the worker thread, inside `SqliteStore._tx` -------------------------------
def _applied(db: sqlite3.Connection, sid: str, action_id: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM actions WHERE sid = ? AND action_id = ?", (sid, action_id)
        ).fetchone()
        is not None
    )


def _replay(
    db: sqlite3.Connection, sid: str, after_seq: int, limit: int, at: float
) -> list[dict[str, Any]]:
    if db.execute("SELECT 1 FROM sessions WHERE sid = ? AND expires > ?", (sid, at)).fetchone():
        rows = db.execute(
            "SELECT event FROM transcript WHERE sid = ? AND seq > ? ORDER BY seq LIMIT ?",
            (sid, after_seq, limit),
        ).fetchall()
        return [_load(r[0]) for r in rows]
    return []


def _newest(db: sqlite3.Connection, table: str, column: str, count: int) -> list[dict[str, Any]]:
    rows = db.execute(f"SELECT {column} FROM {table} ORDER BY n DESC LIMIT ?", (count,)).fetchall()
    return [_load(r[0]) for r in reversed(rows)]


def _handoff(db: sqlite3.Connection, sid: str, at: float) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT record FROM handoffs WHERE sid = ? AND expires > ?", (sid, at)
    ).fetchone()
    return _load(row[0]) if row is not None else None


def _put_handoff(
    db: sqlite3.Connection, sid: str, record: dict[str, Any], score: float | None, expires: float
) -> None:
    db.execute(
        "INSERT INTO handoffs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE SET "
        "record = excluded.record, status = excluded.status, team = excluded.team, "
        "agent = excluded.agent, score = excluded.score, expires = excluded.expires",
        (
            sid,
            _dump(record),
            record["status"],
            record.get("team"),
            record.get("agent"),
            score,
            expires,
        ),
    )


def _ticket(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = db.execute("SELECT ticket, packet FROM tickets WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    ticket: dict[str, Any] = _load(row[0])
    if row[1] is not None:
        ticket["packet"] = _load(row[1])
    return ticket


def _notes(db: sqlite3.Connection, sid: str, at: float) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT note FROM notes WHERE sid = ? AND expires > ? ORDER BY n", (sid, at)
    ).fetchall()
    return [_load(r[0]) for r in rows]


def _drop_sessions(db: sqlite3.Connection, sids: list[str]) -> None:
    pairs = [(s,) for s in sids]
    db.executemany("DELETE FROM sessions WHERE sid = ?", pairs)
    db.executemany("DELETE FROM transcript WHERE sid = ?", pairs)
    db.executemany("DELETE FROM actions WHERE sid = ?", pairs)


def _sweep(db: sqlite3.Connection, at: float) -> int:
    """Delete what has expired by `at`: a batch of sessions (with their transcripts and action
    ids), and every other expired record. How many sessions were deleted."""
    sids = [
        r[0]
        for r in db.execute(
            "SELECT sid FROM sessions WHERE expires <= ? LIMIT ?", (at, SWEEP_BATCH)
        ).fetchall()
    ]
    _drop_sessions(db, sids)
    db.execute("DELETE FROM versions WHERE expires <= ?", (at,))
    db.execute("DELETE FROM handoffs WHERE expires <= ?", (at,))
    db.execute("DELETE FROM tokens WHERE expires <= ?", (at,))
    db.execute("DELETE FROM notes WHERE expires <= ?", (at,))
    db.execute("DELETE FROM once_keys WHERE until <= ?", (at,))
    db.execute("DELETE FROM failures WHERE until <= ?", (at,))
    return len(sids)
