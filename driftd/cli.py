"""argv -> config -> run. Heavy imports happen inside the command that needs them, so --help stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__

if TYPE_CHECKING:  # imported inside the commands at run time: `driftd --help` stays fast
    from .config import Config

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="driftd",
        description="Detect, alert on and revert drift between Git and live Kubernetes clusters and AWS accounts.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--config", "-c", type=Path, default=None,
                       help="config file (default: $DRIFTD_CONFIG, then /etc/driftd/driftd.toml)")
        return c

    cmd("run", "run the daemon: watch, alert and enforce continuously")
    c = cmd("check", "one read-only pass; exit 0 in sync, 1 drift found, 2 an environment could not be checked")
    c.add_argument("--env", action="append", default=[], metavar="NAME", help="only this environment (repeatable)")
    c.add_argument("--target", choices=("kubernetes", "aws"), help="only this kind of target")
    c.add_argument("--output", "-o", choices=("text", "json"), default="text")
    c = cmd("sync", "bring live state back to Git once (revert, recreate, prune where allowed)")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--target", choices=("kubernetes", "aws"), help="only this kind of target")
    c.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    c.add_argument("--output", "-o", choices=("text", "json"), default="text")
    c = cmd("validate", "check the config and that every environment's desired state parses; exit 0 or 2")
    c.add_argument("--config-only", action="store_true",
                   help="check the config file only; do not fetch repositories or parse desired state")
    c = cmd("history", "show the audit trail")
    c.add_argument("--env", metavar="NAME")
    c.add_argument("--object", metavar="KIND/[NAMESPACE/]NAME", help="only events about this object")
    c.add_argument("--since", default="24h", help="how far back (default 24h)")
    c.add_argument("--output", "-o", choices=("text", "json"), default="text")
    c = cmd("pause", "break-glass: hold enforcement of an environment (or one object) for a while; it observes")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--object", metavar="KIND/[NAMESPACE/]NAME", help="only this object (default: the environment)")
    c.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="such as 30m or 2h (at most 7d)")
    c.add_argument("--reason", required=True, help="why (recorded in the audit trail, shown in alerts)")
    c = cmd("resume", "end a pause now (without --object: every pause of the environment)")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--object", metavar="KIND/[NAMESPACE/]NAME")
    c = cmd("report", "render the current state (from the state store, or a fresh check) as markdown, HTML or JSON")
    c.add_argument("--format", "-f", choices=("markdown", "html", "json"), default="markdown")
    c.add_argument("--env", action="append", default=[], metavar="NAME", help="only this environment (repeatable)")
    c.add_argument("--since", default=None,
                   help="only drifts that began since (24h, 7d or an ISO date), plus the audit trail since then")
    c.add_argument("--fresh", action="store_true",
                   help="run a read-only check now instead of reading what the daemon recorded")
    c = cmd("diff", "what would change live if a revision were applied; exit 0 without changes, 1 with, 2 error")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--revision", required=True, metavar="REF", help="a branch, tag or commit of the repository")
    c.add_argument("--output", "-o", choices=("text", "markdown", "json"), default="text")
    c = cmd("adopt", "write an object's live values of drifted fields into its manifest, on a new branch "
                     "driftd/adopt/... (never the environment's); prints the branch")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--object", required=True, metavar="KIND/[NAMESPACE/]NAME")
    c.add_argument("--path", action="append", default=[], metavar="POINTER",
                   help="only changes at or below this JSON pointer (repeatable; default: every drifted field)")
    c = cmd("baseline", "re-take the baseline of security-relevant AWS properties templates leave out, after an "
                        "intended change (recorded in the audit trail)")
    c.add_argument("--env", required=True, metavar="NAME")
    c.add_argument("--object", action="append", default=[], metavar="KIND/NAME",
                   help="only this resource (repeatable; KIND/NAME, KIND/REGION/NAME or NAME); default: all")
    cmd("permissions", "print the IAM policy and Kubernetes RBAC the configured environments need")
    sub.add_parser("version", help="print the version")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"driftd {__version__}")
        return EXIT_OK
    from .config import default_config_path, load_config
    from .errors import ConfigErrors
    from .log import configure_logging

    path: Path = args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigErrors as e:
        print(f"driftd: invalid configuration:\n{_indent(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    configure_logging(config.daemon.log_format, config.daemon.log_level)
    from . import secrets

    secrets.configure(config.daemon.secret_name_patterns)
    try:
        return _dispatch(args, config)
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, config: object) -> int:
    from .config import Config

    assert isinstance(config, Config)
    out: TextIO = sys.stdout
    if args.command == "validate":
        from .engine.validate import validate

        problems = validate(config, config_only=args.config_only,
                            warn=lambda w: print(f"warning: {w}", file=sys.stderr))
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print(f"driftd: {len(problems)} problem(s) found", file=sys.stderr)
            return EXIT_ERROR
        print(f"{config.path}: OK ({len(config.environments)} environment(s))", file=out)
        return EXIT_OK
    if args.command in ("check", "sync"):
        from .engine import oneshot
        from .model import TargetKind
        from .render.text import render_json, render_text

        target = TargetKind(args.target) if args.target else None
        if _unknown_environments(config, [args.env] if args.command == "sync" else args.env):
            return EXIT_ERROR
        if args.command == "check":
            report = oneshot.run_check(config, envs=args.env, target=target)
        else:
            report = oneshot.run_sync(config, env=args.env, target=target, dry_run=args.dry_run)
        # render_json / render_text mask secret-like values (the last line of defence, as for alerts and the API)
        if args.output == "json":
            render_json(report, out)
        else:
            render_text(report, out, color=out.isatty())
        return report.exit_code
    if args.command == "baseline":
        from .engine import oneshot

        if _unknown_environments(config, [args.env]):
            return EXIT_ERROR
        retaken, error = oneshot.run_baseline(config, args.env, args.object)
        for key, moved in retaken:
            what = ", ".join(f"{c.path}" for c in moved) or "unchanged"
            print(f"{key.kind} {key.name}: baseline re-taken ({what})", file=out)
        if error:
            print(f"driftd: {error}", file=sys.stderr)
            return EXIT_ERROR
        if args.object and not retaken:
            print(f"driftd: no AWS resource of {args.env} matches {', '.join(args.object)}", file=sys.stderr)
            return EXIT_ERROR
        print(f"{len(retaken)} baseline(s) re-taken in {args.env}", file=out)
        return EXIT_OK
    if args.command == "history":
        from .engine.history import show_history

        return show_history(config, env=args.env, obj=args.object, since=args.since, output=args.output, out=out)
    if args.command in ("pause", "resume"):
        from .engine import pauses

        if args.command == "pause":
            return pauses.pause(config, env=args.env, obj=args.object, duration=args.duration, reason=args.reason,
                                out=out)
        return pauses.resume(config, env=args.env, obj=args.object, out=out)
    if args.command == "report":
        from .engine.reporting import run_report

        if _unknown_environments(config, args.env):
            return EXIT_ERROR
        return run_report(config, envs=args.env, since=args.since, fmt=args.format, fresh=args.fresh, out=out)
    if args.command == "diff":
        from .engine.preview import run_preview

        if _unknown_environments(config, [args.env]):
            return EXIT_ERROR
        return run_preview(config, env=args.env, ref=args.revision, output=args.output, out=out)
    if args.command == "adopt":
        from .engine.adopt import run_adopt

        if _unknown_environments(config, [args.env]):
            return EXIT_ERROR
        return run_adopt(config, env=args.env, obj=args.object, paths=args.path, out=out)
    if args.command == "permissions":
        from .engine.permissions import render_permissions

        out.write(render_permissions(config))
        return EXIT_OK
    if args.command == "run":
        from .daemon import run

        return run(config)
    raise AssertionError(args.command)


def _unknown_environments(config: Config, names: Sequence[str]) -> bool:
    """Says on stderr which of ``names`` are not environments of ``config`` (and which are); True if any."""
    known = [e.name for e in config.environments]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"driftd: no environment named {', '.join(map(repr, unknown))} in {config.path} "
              f"(defined: {', '.join(known) or 'none'})", file=sys.stderr)
    return bool(unknown)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
