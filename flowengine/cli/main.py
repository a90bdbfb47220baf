"""`flowengine` command line: validate, test, graph, chat (and serve, once the server exists)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..language import load_project

DEFAULT_FLOWS = "flows"


def _flows_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--flows",
        default=DEFAULT_FLOWS,
        metavar="DIR",
        help="directory of flows (default: ./flows)",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [DEFAULT_FLOWS]
    result = load_project(paths)
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
        print(
            f"{status}: {len(result.files)} file(s), {errors} error(s), {warnings} warning(s)",
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
    print(render_graph(result.project.flows[args.flow], args.format))
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from ..testing.runner import run_cli

    return run_cli(args.files, flows_dir=args.flows, verbose=args.verbose)


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat import run_chat

    return run_chat(flows_dir=args.flows, flow=args.flow, locale=args.locale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowengine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check flows; exit 1 on any error")
    p.add_argument("paths", nargs="*", help="flow files or directories (default: ./flows)")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("graph", help="draw a flow as Mermaid or Graphviz DOT")
    p.add_argument("flow")
    p.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    _flows_arg(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("test", help="run conversation tests (default: the flows' own)")
    p.add_argument("files", nargs="*", help="*.test.yaml files or directories")
    p.add_argument("-v", "--verbose", action="store_true")
    _flows_arg(p)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("chat", help="talk to the flows in this terminal (demo order backend)")
    p.add_argument("--flow", default=None, help="flow to start in (default: the project's start)")
    p.add_argument("--locale", default="", help="e.g. en, cs, th, id, ro, fr-CA")
    _flows_arg(p)
    p.set_defaults(func=cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "flows") and not Path(args.flows).exists():
        print(f"flowengine: no such directory: {args.flows}", file=sys.stderr)
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
