"""How the module's engine scales with the size and the shape of a config (issue 10, item 12).

Run it with ``bench/size`` (the project venv's Python; no podman, no containerd binary, no root).
For each config it times, in interleaved rounds (medians):

tomllib      a plain stdlib ``tomllib.loads`` of the text: the reference (ratio 1.00)
tomlkit      a tomlkit parse of the text (what a read-only look cost before ``tomledit.load``)
apply        the engine's ``plan()`` (config_source=file, containerd 1.7.24) on the unpatched file:
             reading, deciding and editing, in-process
no-change    the same ``plan()`` on the file as the apply left it (what every later run costs)

and prints each as a ratio to the tomllib parse of the same text.  The configs are built from
``tests/fixtures/containerd/default-1.7.toml`` (``containerd config default`` of 1.7):

1x, 10x, 100x  the default config and 9 / 99 renamed copies of all its tables below it
               (``[cgroup]`` -> ``[copy1.cgroup]``; the root keys go under ``[copy1]``)
ooo-1x/10x     the 1x / 10x config with 40 runtime tables (and their options) appended at the end,
               after ``[ttrpc]``: tables out of order, a ``cat >>`` habit
comments       the 1x config with 10,000 comment lines spread between its lines

The goal (issue 10): time linear in the size (the ratio stays flat from 1x to 100x) and a no-change
plan within 3x of the tomllib parse at 10x.  Nothing is asserted on time; the exit status is 1 only
when a plan did not do what it should (the apply must change the file, the no-change run must not).
"""
from __future__ import annotations

import argparse
import gc
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT = REPO / "tests" / "fixtures" / "containerd" / "default-1.7.toml"
BINVER = (1, 7, 24)
RT = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%s]'
_HEADER = re.compile(r"^([ \t]*)(\[\[?)(.*)$")

sys.path.insert(0, str(HERE))
from run import fmt_ratio, fmt_time, ratio, stats, table, _collection_imports  # noqa: E402


# =========================================================================== the configs
def scaled(text: str, factor: int) -> str:
    """``text`` and ``factor - 1`` copies of it, every table renamed under ``copyN.``."""
    out = [text if text.endswith("\n") else text + "\n"]
    for n in range(1, factor):
        lines = ["\n[copy%d]\n" % n]
        for line in text.splitlines(keepends=True):
            m = _HEADER.match(line)
            lines.append("%s%scopy%d.%s" % (m.group(1), m.group(2), n, m.group(3)) + line[len(m.group(0)):]
                         if m else line)
        out.append("".join(lines))
    return "".join(out)


def out_of_order(text: str, tables: int = 40) -> str:
    """``text`` with ``tables`` runtime tables (each with an options sub-table) appended at the end."""
    extra = []
    for i in range(tables):
        name = "extra-%d" % i
        extra.append("\n" + RT % name + "\n  runtime_type = \"io.containerd.runc.v2\"\n"
                     + "  " + RT[:-1] % name + ".options]\n    BinaryName = \"/usr/local/bin/runc-%d\"\n" % i)
    return text + "".join(extra)


def commented(text: str, comments: int = 10000) -> str:
    lines = text.splitlines(keepends=True)
    per, extra = divmod(comments, len(lines))
    out, k = [], 0
    for i, line in enumerate(lines):
        for _line in range(per + (1 if i < extra else 0)):
            out.append("# comment line %d: the quick brown fox jumps over the lazy dog\n" % k)
            k += 1
        out.append(line)
    return "".join(out)


def configs(scales: List[int]) -> Dict[str, str]:
    base = DEFAULT.read_text()
    out = {}
    for s in scales:
        out["%dx" % s] = scaled(base, s)
    for s in [s for s in scales if s <= 10]:
        out["ooo-%dx" % s] = out_of_order(scaled(base, s))
    out["comments"] = commented(base)
    return out


# =========================================================================== timing
class Measure:
    def __init__(self, name: str, fn: Callable[[], Any], before: Callable[[], Any] = None):
        self.name, self.fn, self.before = name, fn, before
        self.samples: List[float] = []

    def once(self) -> None:
        if self.before is not None:
            self.before()
        gc.collect()
        t0 = time.perf_counter()
        self.fn()
        self.samples.append(time.perf_counter() - t0)


def bench_one(name: str, text: str, repeat: int, budget: float, failures: List[str]) -> Dict[str, Any]:
    import tomllib
    import tomlkit
    from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
    from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit

    with tempfile.TemporaryDirectory(prefix="gpuops-bench-size-") as tmp:
        fresh, patched = Path(tmp) / "fresh.toml", Path(tmp) / "patched.toml"
        fresh.write_text(text)
        opts_f = {"config": str(fresh), "containerd_path": str(Path(tmp) / "no-containerd"), "config_source": ["file"]}
        opts_p = dict(opts_f, config=str(patched))

        def cold():   # a module run reads every text for the first time: no text remembered from the last run
            clear = getattr(tomledit, "clear_cache", None)
            if clear is not None:
                clear()

        cold()
        t0 = time.perf_counter()
        p = engine.plan(opts_f, binary_version=BINVER)
        first = time.perf_counter() - t0
        if not p.changed:
            failures.append("%s: plan() on the unpatched config changes nothing" % name)
        patched.write_text(p.files[-1].after)

        def nochange():
            if engine.plan(opts_p, binary_version=BINVER).changed:
                failures.append("%s: a second plan() still changes the file" % name)

        measures = [
            Measure("tomllib", lambda: tomllib.loads(text)),
            Measure("tomlkit", lambda: tomlkit.parse(text)),
            Measure("apply", lambda: engine.plan(opts_f, binary_version=BINVER), before=cold),
            Measure("no-change", nochange, before=cold),
        ]
        measures[2].samples.append(first)
        start = time.perf_counter()
        for i in range(repeat):
            for m in measures:
                if len(m.samples) <= i:
                    m.once()
            if time.perf_counter() - start > budget:
                break
    rows = {m.name: stats(m.samples) for m in measures}
    ref = rows["tomllib"]["median_s"]
    for row in rows.values():
        row["ratio_to_tomllib"] = round(ratio(row["median_s"], ref), 2) if ref else None
    return {"lines": text.count("\n"), "bytes": len(text.encode()), "rows": rows}


def report(results: Dict[str, Dict[str, Any]]) -> str:
    names = ["tomllib", "tomlkit", "apply", "no-change"]
    rows = []
    for cfg, r in results.items():
        cells = [cfg, str(r["lines"])]
        for n in names:
            row = r["rows"][n]
            cells.append("%s (%s)" % (fmt_time(row["median_s"]), fmt_ratio(row["ratio_to_tomllib"])))
        cells.append(str(r["rows"]["no-change"]["n"]))
        rows.append(cells)
    return table(["config", "lines"] + ["%s (ratio)" % n for n in names] + ["n"], rows)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/size", description=__doc__.split("\n\n", maxsplit=1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,10,100", help="size factors (default 1,10,100)")
    ap.add_argument("--repeat", "-k", type=int, default=7, help="samples per measure at most (default 7)")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="stop sampling a config after this many seconds (at least one sample each; default 20)")
    ap.add_argument("--only", action="append", help="only these configs (e.g. 10x, ooo-1x, comments); repeatable")
    ap.add_argument("--tomlkit-reader", action="store_true",
                    help="read as a node without tomllib/tomli does (Python < 3.11): tomledit.load() falls back to tomlkit")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    _collection_imports()
    if args.tomlkit_reader:
        from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit
        tomledit._fast_toml = None
    cfgs = configs([int(s) for s in args.scales.split(",") if s])
    failures: List[str] = []
    results = {}
    for name, text in cfgs.items():
        if args.only and name not in args.only:
            continue
        print("size: %s (%d lines)" % (name, text.count("\n")), file=sys.stderr, flush=True)
        results[name] = bench_one(name, text, args.repeat, args.budget, failures)
    print(report(results))
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
