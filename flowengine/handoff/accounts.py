"""Agent accounts: who may log in to the console, with which role and teams.

Kept in Redis (`fe:accounts`) when the server runs on Redis, so every box sees the same agents;
else in a JSON file (`agents.json`). Managed with `flowengine agents add|remove|list`; passwords
are stored only as scrypt hashes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
ROLES = ("agent", "admin")


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    role: str
    teams: tuple[str, ...]
    password_hash: str

    def public(self) -> dict[str, object]:
        return {
            "username": self.username,
            "name": self.name,
            "role": self.role,
            "teams": list(self.teams),
        }


def _decode(raw: str | bytes) -> Account:
    d = json.loads(raw)
    return Account(d["username"], d["name"], d["role"], tuple(d["teams"]), d["password_hash"])


def _encode(a: Account) -> str:
    return json.dumps({**asdict(a), "teams": list(a.teams)})


class AccountBook(Protocol):
    def get(self, username: str) -> Account | None: ...
    def all(self) -> list[Account]: ...
    def put(self, account: Account) -> None: ...
    def remove(self, username: str) -> bool: ...


class FileAccounts:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Account]:
        if not self.path.is_file():
            return {}
        data = json.loads(self.path.read_text("utf-8") or "{}")
        return {k: _decode(json.dumps(v)) for k, v in data.items()}

    def _write(self, accounts: dict[str, Account]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({k: json.loads(_encode(v)) for k, v in accounts.items()}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".agents")
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def get(self, username: str) -> Account | None:
        return self._read().get(username)

    def all(self) -> list[Account]:
        return sorted(self._read().values(), key=lambda a: a.username)

    def put(self, account: Account) -> None:
        accounts = self._read()
        accounts[account.username] = account
        self._write(accounts)

    def remove(self, username: str) -> bool:
        accounts = self._read()
        if accounts.pop(username, None) is None:
            return False
        self._write(accounts)
        return True


class RedisAccounts:
    KEY = "fe:accounts"

    def __init__(self, url: str, password: str | None = None) -> None:
        """`url`: any form the store takes (plain, TLS, Sentinel, Cluster); `password`: else
        the URL's, or $FLOWENGINE_REDIS_PASSWORD."""
        from ..store.redis_topology import read_password, sync_client

        self._r = sync_client(url, password=password or read_password(None))

    def get(self, username: str) -> Account | None:
        with _store_errors():
            raw = self._r.hget(self.KEY, username)
        return _decode(raw) if raw else None

    def all(self) -> list[Account]:
        with _store_errors():
            values = self._r.hgetall(self.KEY).values()
        return sorted((_decode(v) for v in values), key=lambda a: a.username)

    def put(self, account: Account) -> None:
        with _store_errors():
            self._r.hset(self.KEY, account.username, _encode(account))

    def remove(self, username: str) -> bool:
        with _store_errors():
            removed = bool(self._r.hdel(self.KEY, username))
            if removed:  # close the account's open consoles on every instance now (service.logins)
                self._r.publish(f"fe:n:@agent:{username}", json.dumps({"logout": "*"}))
        return removed


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Redis failing, as every store reports it (`StoreUnavailable`): a login the store cannot
    check is "try again", never "wrong password" or a crash."""
    from ..store import StoreUnavailable
    from ..store.redis_topology import FAILURES, problem_of

    try:
        yield
    except FAILURES as exc:
        raise StoreUnavailable(f"agent accounts: {problem_of(exc)}: {exc}") from exc


def open_accounts(redis_url: str | None, path: str, password: str | None = None) -> AccountBook:
    return RedisAccounts(redis_url, password) if redis_url else FileAccounts(path)
