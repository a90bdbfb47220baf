"""`flowengine` command line: validate, test, graph, chat, serve, agents and report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..language import Diagnostic, LoadResult, load_project
from ..language.diagnostics import sort_key
from .report import add_store_args

DEFAULT_FLOWS = "flows"
DEFAULT_HANDOFF_CONFIG = "handoff.yaml"
DEFAULT_AGENTS_FILE = "agents.json"
DEFAULT_DATA_DIR = "data"

# Path options default to None, which means "not given": a default path may be absent (the
# built-in defaults are used then), a path named on the command line must exist.


def _flows_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--flows",
        default=None,
        metavar="DIR",
        help="directory of flows (default: ./flows)",
    )


def _handoff_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--handoff-config",
        default=None,
        metavar="PATH",
        help="teams, routing, opening hours, webhooks (default: ./handoff.yaml, if there)",
    )


def _missing(path: str, *, directory: bool = False) -> str | None:
    """Why `path` cannot be used, or None when it can."""
    p = Path(path)
    if not p.exists():
        return f"no such {'directory' if directory else 'file'}: {path}"
    if directory and not p.is_dir():
        return f"not a directory: {path}"
    if not directory and not p.is_file():
        return f"not a file: {path}"
    return None


def _resolve_paths(args: argparse.Namespace) -> str | None:
    """Fill in the default paths, and refuse a named one that is not there (the message)."""
    if hasattr(args, "flows"):
        if args.flows is None:
            args.flows = DEFAULT_FLOWS
            if not Path(DEFAULT_FLOWS).exists():
                return f"no ./{DEFAULT_FLOWS} directory here; name one with --flows DIR"
        elif not Path(args.flows).exists():
            return f"--flows: no such directory: {args.flows}"
    if hasattr(args, "handoff_config"):
        if args.handoff_config is None:
            found = Path(DEFAULT_HANDOFF_CONFIG).is_file()
            args.handoff_config = DEFAULT_HANDOFF_CONFIG if found else None
        elif problem := _missing(args.handoff_config):
            return f"--handoff-config: {problem}"
    if hasattr(args, "agents_file"):
        if args.agents_file is None:
            args.agents_file = DEFAULT_AGENTS_FILE
        elif args.command == "agents":  # `agents add` creates the file, in a directory that exists
            parent = str(Path(args.agents_file).parent)
            if problem := _missing(parent, directory=True):
                return f"--agents-file: {problem}"
        elif problem := _missing(args.agents_file):
            return f"--agents-file: {problem} (`flowengine agents add` creates it)"
    return None


def _source_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _check_handoff_config(path: str) -> tuple[list[Diagnostic], list[str]]:
    from ..handoff.config import check

    _, diagnostics = check(path)
    return diagnostics, _source_lines(path)


def _add_handoff_config(result: LoadResult, path: str) -> None:
    """handoff.yaml's diagnostics, rendered and counted with the flows'."""
    diagnostics, lines = _check_handoff_config(path)
    result.sources[path] = lines
    result.diagnostics = sorted([*result.diagnostics, *diagnostics], key=sort_key)


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [DEFAULT_FLOWS]
    result = load_project(paths)
    if args.handoff_config is not None:
        _add_handoff_config(result, args.handoff_config)
    if args.format == "json":
        print(json.dumps([d.to_dict() for d in result.diagnostics], indent=2))
    elif result.diagnostics:
        print(result.render(), file=sys.stderr)
        print(file=sys.stderr)
    errors, warnings = len(result.errors), len(result.warnings)
    failed = errors > 0 or (args.strict and warnings > 0) or not result.files
    if args.format == "text":
        if not result.files:
            print(f"no flow files found in {', '.join(paths)}", file=sys.stderr)
        status = "FAILED" if failed else "ok"
        also = f"; also checked {args.handoff_config}" if args.handoff_config else ""
        print(
            f"{status}: {len(result.files)} file(s), {errors} error(s), {warnings} warning(s)"
            + also,
            file=sys.stderr if failed else sys.stdout,
        )
    return 1 if failed else 0


def cmd_graph(args: argparse.Namespace) -> int:
    from ..graph import render_graph

    result = load_project([args.flows])
    if not result.ok or result.project is None:
        print(result.render(include_warnings=False), file=sys.stderr)
        return 1
    if args.flow not in result.project.flows:
        print(
            f"no flow '{args.flow}'; flows: {', '.join(sorted(result.project.flows))}",
            file=sys.stderr,
        )
        return 2
    funnel = None
    if args.stats:
        from .report import UsageError, run

        try:
            funnel = run(args, result.project, "funnel")
        except UsageError as e:
            print(f"flowengine graph --stats: {e}", file=sys.stderr)
            return 2
    print(render_graph(result.project.flows[args.flow], args.format, funnel))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import cmd_report as report

    return report(args)


def cmd_test(args: argparse.Namespace) -> int:
    from ..testing.runner import run_cli

    return run_cli(args.files, flows_dir=args.flows, verbose=args.verbose)


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat import run_chat

    return run_chat(flows_dir=args.flows, flow=args.flow, locale=args.locale)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from ..server.http_limits import GuardedWebSocketProtocol, HeaderTimeoutProtocol

    result = load_project([args.flows])
    if not result.ok:
        print(result.render(include_warnings=False), file=sys.stderr)
        print("the flows do not validate; not serving them", file=sys.stderr)
        return 1
    from ..actions.declared import environment_problem
    from ..server.flows import precompiled

    precompiled(args.flows, result)  # the app below, in this process, starts from these

    if result.project is not None and (problem := environment_problem(result.project)):
        print(problem, file=sys.stderr)
        return 1
    if args.handoff_config is not None:
        diagnostics, lines = _check_handoff_config(args.handoff_config)
        if diagnostics:
            print("\n\n".join(d.render(lines) for d in diagnostics), file=sys.stderr)
        if any(d.is_error for d in diagnostics):
            print(f"{args.handoff_config} does not validate; not serving", file=sys.stderr)
            return 1
    redis_url = args.redis_url or os.environ.get("FLOWENGINE_REDIS_URL") or None
    if args.workers > 1 and not redis_url:
        print(
            "--workers above 1 needs --redis-url: the embedded store (a file in --data-dir, or "
            "memory) belongs to one process; each worker would keep its own sessions",
            file=sys.stderr,
        )
        return 2
    if args.memory and args.data_dir is not None:
        print("--memory keeps nothing on disk: give it or --data-dir, not both", file=sys.stderr)
        return 2
    # Without Redis, the embedded store: a file in the data dir, or (--memory) nothing kept.
    data_dir = None if redis_url or args.memory else (args.data_dir or DEFAULT_DATA_DIR)
    origins = args.allowed_origins or os.environ.get("FLOWENGINE_ALLOWED_ORIGINS", "")
    options = {
        "freeze_after_startup": True,
        "flows_dir": args.flows,
        "redis_url": redis_url,
        "redis_password_file": args.redis_password_file,
        "redis_wait_replicas": args.redis_wait_replicas,
        "redis_wait_timeout": args.redis_wait_timeout,
        "data_dir": data_dir,
        "allowed_origins": [o.strip().rstrip("/") for o in origins.split(",") if o.strip()],
        "session_ttl": args.session_ttl,
        "orders_api": args.orders_api or os.environ.get("FLOWENGINE_ORDERS_API") or None,
        "orders": args.orders or os.environ.get("FLOWENGINE_ORDERS") or None,
        "shopify_shop": args.shopify_shop,
        "shopify_token_file": args.shopify_token_file,
        "shopify_client_secret_file": args.shopify_client_secret_file,
        "woocommerce_url": args.woocommerce_url,
        "woocommerce_secret_file": args.woocommerce_secret_file,
        "watch_flows": args.watch,
        "socket_rate": args.socket_rate,
        "socket_burst": max(int(args.socket_rate * 4), 1),
        "ip_rate": args.ip_rate,
        "ip_burst": max(int(args.ip_rate * 2), 1),
        "max_sockets_per_ip": args.max_sockets_per_ip,
        "new_sessions_per_minute": args.new_sessions_per_minute,
        "static_dir": args.widget_dir,
        "handoff_config": args.handoff_config,
        "agents_file": args.agents_file,
        "header_timeout": args.header_timeout,
        "keep_alive_timeout": args.keep_alive_timeout,
        "insights_retention_days": args.insights_retention_days,
    }
    if args.insights_retention_days < 1:
        print("--insights-retention-days is a number of days, at least 1", file=sys.stderr)
        return 2
    if args.header_timeout <= 0 or args.keep_alive_timeout <= 0:
        print("--header-timeout and --keep-alive-timeout are seconds above 0", file=sys.stderr)
        return 2
    # Proxies whose X-Forwarded-For names the client (the per-address limits count that one).
    # None: uvicorn's own FORWARDED_ALLOW_IPS, else this machine only.
    forwarded_allow_ips = (
        args.forwarded_allow_ips or os.environ.get("FLOWENGINE_FORWARDED_ALLOW_IPS") or None
    )
    if problem := _backend_problem(args, options["orders_api"]):
        print(f"the order backend cannot be used: {problem}", file=sys.stderr)
        return 2
    if data_dir is not None and (problem := _data_dir_problem(data_dir)):
        print(f"--data-dir: {problem}", file=sys.stderr)
        return 2
    os.environ["FLOWENGINE_SERVER_CONFIG"] = json.dumps(options)
    uvicorn.run(
        "flowengine.server.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # websockets (sans-I/O), with a handshake deadline and a rate for pings and pongs,
        # which the protocol answers without the app seeing them.
        ws=GuardedWebSocketProtocol,
        ws_per_message_deflate=False,
        # Frames up to 1 MiB reach the app, which refuses those over its own limit with an
        # error frame instead of a dropped connection.
        ws_max_size=1024 * 1024,
        log_level=args.log_level,
        # h11 (uvicorn's choice without httptools), with a deadline for request headers; the
        # workers read it from FLOWENGINE_SERVER_CONFIG.
        http=HeaderTimeoutProtocol,
        timeout_keep_alive=args.keep_alive_timeout,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        # On SIGTERM sockets are told to go (1012: clients reconnect, to another instance);
        # a handler still busy after this long is cancelled, so a stop never hangs.
        timeout_graceful_shutdown=10,
    )
    return 0


def _data_dir_problem(data_dir: str) -> str | None:
    """Why the embedded store cannot be kept in `data_dir` (a file in the way, no permission,
    a damaged file, another process on it), found before any port is opened; None when it can.
    Creates the directory and the store's file when they are missing."""
    import asyncio

    from ..store.sqlite import DataDirError, SqliteStore

    try:
        store = SqliteStore(data_dir)
    except DataDirError as e:
        return str(e)
    asyncio.run(store.close())
    return None


def _backend_problem(args: argparse.Namespace, orders_api: str | None) -> str | None:
    """Why the order backend `serve` was told to use cannot be built (a missing token, a bad
    shop domain), found before any port is opened; None when it can."""
    import os

    from ..actions.backends import (
        BackendSettings,
        BackendSettingsError,
        choose_kind,
        open_backend,
    )

    try:
        kind = choose_kind(
            args.orders or os.environ.get("FLOWENGINE_ORDERS") or None,
            orders_api,
            bool(args.shopify_shop or args.shopify_token_file or args.shopify_client_secret_file),
            bool(args.woocommerce_url or args.woocommerce_secret_file),
        )
    except BackendSettingsError as exc:
        return str(exc)
    settings = BackendSettings(
        kind=kind,
        orders_api=orders_api,
        shopify_shop=args.shopify_shop,
        shopify_token_file=args.shopify_token_file,
        shopify_client_secret_file=args.shopify_client_secret_file,
        woocommerce_url=args.woocommerce_url,
        woocommerce_secret_file=args.woocommerce_secret_file,
    )
    try:
        open_backend(settings)
    except BackendSettingsError as exc:
        return str(exc)
    return None


def cmd_agents(args: argparse.Namespace) -> int:
    import getpass
    import os

    from ..handoff.accounts import ROLES, USERNAME, Account, open_accounts
    from ..handoff.passwords import hash_password

    redis_url = args.redis_url or os.environ.get("FLOWENGINE_REDIS_URL") or None
    book = open_accounts(redis_url, args.agents_file)
    where = "Redis" if redis_url else args.agents_file
    if args.action == "list":
        for a in book.all():
            print(f"{a.username:<20} {a.role:<6} {','.join(a.teams):<30} {a.name}")
        return 0
    username = (args.username or "").strip().lower()
    if not USERNAME.match(username):
        print("a username is 2-32 lower-case letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    if args.action == "remove":
        if not book.remove(username):
            print(f"no agent '{username}'", file=sys.stderr)
            return 1
        print(f"removed {username} from {where}")
        return 0
    if args.role not in ROLES:
        print(f"--role is one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {username}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 10:
        print("use a password of at least 10 characters", file=sys.stderr)
        return 2
    teams = tuple(t.strip() for t in args.teams.split(",") if t.strip()) or ("general",)
    book.put(Account(username, args.name or username, args.role, teams, hash_password(password)))
    print(f"saved {username} ({args.role}; teams {', '.join(teams)}) to {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowengine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check flows and handoff.yaml; exit 1 on any error")
    p.add_argument("paths", nargs="*", help="flow files or directories (default: ./flows)")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _handoff_config_arg(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("graph", help="draw a flow as Mermaid or Graphviz DOT")
    p.add_argument("flow")
    p.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    p.add_argument(
        "--stats",
        action="store_true",
        help="paint the graph with the funnel of a period: entries and drop-offs per step, "
        "counts on edges, the heaviest drop-offs highlighted",
    )
    _flows_arg(p)
    add_store_args(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "report", help="the insights of a period: automation, hand-offs, drop-offs, CSAT, agents"
    )
    p.add_argument("--flow", default=None, help="count only this flow")
    p.add_argument("--locale", default=None, help="count only this locale")
    p.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="table (default), json (the dashboard's numbers), csv (every counter)",
    )
    add_store_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("test", help="run conversation tests (default: the flows' own)")
    p.add_argument("files", nargs="*", help="*.test.yaml files or directories")
    p.add_argument("-v", "--verbose", action="store_true")
    _flows_arg(p)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("serve", help="run the server: shopper WebSocket, demo page, metrics")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--widget-dir",
        default=None,
        help="directory with widget.js and the page served at / (default: widget/)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    _handoff_config_arg(p)
    p.add_argument(
        "--agents-file",
        default=None,
        help="agent accounts when not on Redis (default: ./agents.json, if there)",
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="Redis for sessions (env FLOWENGINE_REDIS_URL); none: embedded store",
    )
    p.add_argument(
        "--redis-password-file",
        default=None,
        metavar="PATH",
        help="the Redis password, kept off the command line (else env FLOWENGINE_REDIS_PASSWORD, "
        "else the URL's)",
    )
    p.add_argument(
        "--redis-wait-replicas",
        type=int,
        default=None,
        metavar="N",
        help="acknowledge a click once N replicas have it (WAIT); default 1 for Sentinel and "
        "Cluster URLs, 0 for one server",
    )
    p.add_argument(
        "--redis-wait-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long a commit waits for its replicas (default 1)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the embedded store keeps sessions, transcripts, the handoff queue, tickets "
        "and analytics across restarts (created if missing; default: ./data); not with Redis",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="keep the embedded store in memory: nothing survives a restart (tests, demos)",
    )
    p.add_argument(
        "--insights-retention-days",
        type=int,
        default=400,
        metavar="DAYS",
        help="how long insights keep a day's counters (default 400; docs/insights.md)",
    )
    p.add_argument(
        "--allowed-origins",
        default=None,
        help="comma-separated origins allowed to open sockets "
        "(env FLOWENGINE_ALLOWED_ORIGINS); default: this server and localhost",
    )
    p.add_argument(
        "--session-ttl",
        type=float,
        default=24 * 3600,
        help="seconds an idle session is kept (default 86400)",
    )
    p.add_argument(
        "--orders",
        choices=["demo", "http", "shopify", "woocommerce"],
        default=None,
        help="order backend (env FLOWENGINE_ORDERS; default: http with --orders-api, else demo)",
    )
    p.add_argument(
        "--orders-api",
        default=None,
        help="base URL of your order API (env FLOWENGINE_ORDERS_API); none: demo data",
    )
    p.add_argument(
        "--shopify-shop",
        default=None,
        metavar="DOMAIN",
        help="the shop, e.g. my-shop.myshopify.com (env FLOWENGINE_SHOPIFY_SHOP)",
    )
    p.add_argument(
        "--shopify-token-file",
        default=None,
        metavar="PATH",
        help="file holding the Admin API access token (else env FLOWENGINE_SHOPIFY_TOKEN)",
    )
    p.add_argument(
        "--shopify-client-secret-file",
        default=None,
        metavar="PATH",
        help="file holding the app's client secret (else env FLOWENGINE_SHOPIFY_CLIENT_SECRET);"
        " the client id: env FLOWENGINE_SHOPIFY_CLIENT_ID",
    )
    p.add_argument(
        "--woocommerce-url",
        default=None,
        metavar="URL",
        help="the store, e.g. https://shop.example (env FLOWENGINE_WOOCOMMERCE_URL)",
    )
    p.add_argument(
        "--woocommerce-secret-file",
        default=None,
        metavar="PATH",
        help="file holding the REST API consumer secret (else env FLOWENGINE_WOOCOMMERCE_SECRET);"
        " the key: env FLOWENGINE_WOOCOMMERCE_KEY",
    )
    p.add_argument("--watch", action="store_true", help="reload flows when their files change")
    p.add_argument(
        "--socket-rate",
        type=float,
        default=5.0,
        help="frames per second one socket may send (bursts of 4x; default 5)",
    )
    p.add_argument(
        "--ip-rate",
        type=float,
        default=30.0,
        help="frames per second one client IP may send (bursts of 2x; default 30)",
    )
    p.add_argument(
        "--max-sockets-per-ip",
        type=int,
        default=50,
        help="open sockets one client IP may hold (default 50)",
    )
    p.add_argument(
        "--new-sessions-per-minute",
        type=float,
        default=30.0,
        help="new conversations one client IP may start a minute (default 30)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="LIST",
        help="comma-separated proxy addresses or networks whose X-Forwarded-For is trusted, "
        "or * (env FLOWENGINE_FORWARDED_ALLOW_IPS or FORWARDED_ALLOW_IPS); "
        "default: 127.0.0.1,::1",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send a request's headers; then it is disconnected "
        "(default 10)",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=5,
        help="seconds an idle kept-alive HTTP connection stays open; behind a load balancer, "
        "more than its idle timeout (default 5)",
    )
    p.add_argument("--log-level", default="info")
    _flows_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("agents", help="manage agent accounts for the console")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("username", nargs="?")
    p.add_argument("--name", default=None, help="display name shown to shoppers")
    p.add_argument("--role", default="agent", help="agent or admin")
    p.add_argument("--teams", default="general", help="comma-separated teams")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--redis-url", default=None, help="keep accounts in Redis (all boxes see them)")
    p.add_argument(
        "--agents-file",
        default=None,
        help="agent accounts when not on Redis; created by add (default: ./agents.json)",
    )
    p.set_defaults(func=cmd_agents)

    p = sub.add_parser("chat", help="talk to the flows in this terminal (demo order backend)")
    p.add_argument("--flow", default=None, help="flow to start in (default: the project's start)")
    p.add_argument("--locale", default="", help="e.g. en, cs, th, id, ro, fr-CA")
    _flows_arg(p)
    p.set_defaults(func=cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    refused = _resolve_paths(args)
    if refused is not None:
        print(f"flowengine: {refused}", file=sys.stderr)
        return 2
    from ..store import StoreUnavailable

    try:
        code: int = args.func(args)
    except StoreUnavailable as exc:  # Redis away (`agents`, `report`): one line, not a traceback
        print(f"flowengine: the store is unavailable: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
