"""The ``zoo`` command: ``zoo list`` · ``zoo run NAME`` · ``zoo report``.

Usage errors (unknown experiment, size, ``--set`` key, ill-typed value, unknown option) print
one line that lists the valid choices and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from zoo import registry

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage block)
        self.exit(EXIT_USAGE, f"zoo: error: {message}\n")


def _option_list(parser: argparse.ArgumentParser) -> str:
    return ", ".join(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description="paperzoo: run the papers' experiments and check their claims.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="{list,run,report}")

    sub.add_parser("list", help="list the registered experiments")

    r = sub.add_parser("run", help="run one experiment and write DIR/result.json")
    r.add_argument("name", help="experiment name (see `zoo list`)")
    r.add_argument("--size", default="quick", choices=registry.SIZES, help="test | quick (default) | paper")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the experiment's)")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    r.add_argument("--out", default=None, help="output directory (default runs/NAME/SIZE-TIMESTAMP)")
    r.add_argument("--resume", action="store_true",
                   help="resume in --out (default: the latest run of NAME at SIZE) from its checkpoints")
    r.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="checkpoint long runs every N chunks (default 1) ...")
    r.add_argument("--checkpoint-seconds", type=float, default=10.0, metavar="S",
                   help="... but at least S seconds apart (default 10; 0: every N chunks); the last always")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on when stderr is a terminal)")
    r.add_argument("--distributed", action="store_true",
                   help="run as one of several processes (jax.distributed); members shard over all processes")
    r.add_argument("--coordinator", default=None, help="with --distributed: coordinator host:port")
    r.add_argument("--num-processes", type=int, default=None, help="with --distributed: number of processes")
    r.add_argument("--process-id", type=int, default=None, help="with --distributed: this process's id")

    rep = sub.add_parser("report", help="collect the latest result of each experiment into a markdown report")
    rep.add_argument("--runs", default="runs", help="directory holding runs/NAME/... (default: runs)")
    rep.add_argument("--out", default="docs/results.md", help="report file (default: docs/results.md)")
    rep.add_argument("--rerun", action="store_true", help="run every experiment first")
    rep.add_argument("--size", default="quick", choices=registry.SIZES, help="size for --rerun and for collection")
    p.subparsers = {"list": sub.choices["list"], "run": r, "report": rep}
    return p


def _latest_run(runs: Path, name: str, size: str, *, finished: bool = True) -> Path | None:
    """The newest run directory of NAME at SIZE: finished ones (with result.json), or any started one."""
    marker = "result.json" if finished else "run.json"
    cands = sorted((runs / name).glob(f"{size}-*/{marker}")) if (runs / name).exists() else []
    if not finished and (runs / name).exists():  # runs from before run.json existed
        cands = sorted({*cands, *(runs / name).glob(f"{size}-*/result.json")}, key=lambda p: p.parent.name)
    return cands[-1].parent if cands else None


def _cmd_list() -> int:
    for name in registry.names():
        exp = registry.get(name)
        print(f"{name:28s} {exp.title}")
    return 0


def _cmd_run(args) -> int:
    out = args.out
    if args.resume and out is None:
        latest = _latest_run(Path("runs"), args.name, args.size, finished=False)
        out = str(latest) if latest is not None else None
    from zoo.train.runner import show_progress

    progress = show_progress(args.progress)
    mesh = None
    if args.distributed:
        from zoo.train import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        mesh = distributed.member_mesh()
    elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        raise registry.UsageError("--coordinator/--num-processes/--process-id: need --distributed")
    res = registry.run_experiment(args.name, size=args.size, seeds=args.seeds, sets=args.sets, out=out,
                                  resume=args.resume, progress=progress, checkpoint_every=args.checkpoint_every,
                                  checkpoint_seconds=args.checkpoint_seconds,
                                  mesh=mesh)
    if mesh is not None:
        import jax

        if jax.process_index() != 0:
            return 0
    verdict = "HOLDS" if res["claim_holds"] else "DOES NOT HOLD"
    print(f"{res['experiment']} [{res['size']}, {len(res['seeds'])} seeds, {res['seconds']:.1f} s]")
    print(f"claim: {res['claim']}")
    print(f"verdict: {verdict}")
    for k, v in res["metrics"].items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    print(f"result: {Path(res['out_dir']) / 'result.json'}")
    return 0


def _report_markdown(results: list[dict], out: Path) -> str:
    lines = ["# Results", "", "Latest result of each experiment, collected by `zoo report`.", "",
             "| experiment | size | seeds | claim | verdict | seconds |", "|---|---|---|---|---|---|"]
    for r in results:
        verdict = "holds" if r["claim_holds"] else "**does not hold**"
        lines.append(f"| {r['experiment']} | {r['size']} | {len(r['seeds'])} | {r['claim']} | {verdict} | {r['seconds']:.1f} |")
    for r in results:
        lines += ["", f"## {r['experiment']}", "", f"Run on {r['env'].get('device')} "
                  f"(jax {r['env'].get('jax')}, {r['env'].get('backend')}), finished {r.get('finished', '?')}.", ""]
        lines += [f"- {k}: {v}" for k, v in r["metrics"].items()]
        for p in r.get("plots", []):
            src = Path(r["out_dir"]) / p
            if not src.exists():
                continue
            dst = out.parent / "img" / "results" / r["experiment"].replace("/", "__") / p
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # the report is self-contained: runs/ is not kept
            lines += ["", f"![{p}]({os.path.relpath(dst, out.parent)})"]
    return "\n".join(lines) + "\n"


def _cmd_report(args) -> int:
    runs = Path(args.runs)
    names = registry.names()
    if args.rerun:
        for name in names:
            print(f"running {name} ({args.size}) ...", flush=True)
            registry.run_experiment(name, size=args.size, out=registry.default_out(name, args.size))
    results = []
    for name in names:
        latest = _latest_run(runs, name, args.size)
        if latest is None:
            print(f"{name}: no {args.size} run under {runs} (run `zoo run {name} --size {args.size}`)")
            continue
        r = json.loads((latest / "result.json").read_text())
        r["out_dir"] = str(latest)
        results.append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_report_markdown(results, out))
    print(f"wrote {out} ({len(results)} of {len(names)} experiments)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = parser.subparsers[args.command]
        parser.error(f"unrecognized arguments: {' '.join(extra)}; valid options of `zoo {args.command}`: "
                     f"{_option_list(sub) or 'none'}")
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_report(args)
    except registry.UsageError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
