"""Run every benchmark and rewrite the measured tables in ``benchmarks/README.md``.

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->`` marker comments;
only the text between the markers is replaced (with the command, the commit and date, and
the command's printed table), so the prose around the tables is kept. Benchmarks:

* ``aflw2000``: ``benchmarks/aflw2000.py --json`` (one core via ``taskset -c 0`` when
  available), plus the issue-2 target checks computed from its JSON and table;
* ``helen``: ``facefit eval 300w ../shared/data/helen-test`` (writes ``300w.json``);
* ``synthetic``: ``facefit eval synthetic --n 100 --photometric-n 100`` (writes
  ``synthetic.json``; ``--photometric-n`` refines only the first faces where that is slow);
* ``model_build``: ``benchmarks/model_build.py``.

Every command's printed output is saved as ``OUT/<name>.txt`` (and its JSON beside it);
``--reuse`` rebuilds the README from those files without running anything again.

    python benchmarks/update_readme.py [--out out/bench] [--only aflw2000,helen] [--reuse]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
DATA = ROOT.parent / "shared" / "data"
NAMES = ("aflw2000", "helen", "synthetic", "model_build")


def _facefit() -> list[str]:
    exe = Path(sys.executable).parent / "facefit"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "facefit.cli"]


def commands(out: Path, synthetic_n: int, photometric_n: int
             ) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, the command as shown in the README)."""
    py = sys.executable
    aflw = [py, "benchmarks/aflw2000.py", "--json", str(out / "aflw2000.json")]
    if shutil.which("taskset") and subprocess.run(["taskset", "-c", "0", "true"],
                                                  check=False).returncode == 0:
        aflw = ["taskset", "-c", "0", *aflw]
    return {
        "aflw2000": (aflw, f"taskset -c 0 python benchmarks/aflw2000.py --json "
                           f"{out / 'aflw2000.json'}"),
        "helen": ([*_facefit(), "eval", "300w", str(DATA / "helen-test"), "--out",
                   str(out / "helen"), "--quiet"],
                  f"facefit eval 300w ../shared/data/helen-test --out {out / 'helen'}"),
        "synthetic": ([*_facefit(), "eval", "synthetic", "--n", str(synthetic_n),
                       "--photometric-n", str(photometric_n), "--out", str(out / "synthetic"),
                       "--quiet"],
                      f"facefit eval synthetic --n {synthetic_n} --photometric-n "
                      f"{photometric_n} --out {out / 'synthetic'}"),
        "model_build": ([py, "benchmarks/model_build.py"], "python benchmarks/model_build.py"),
    }


def run(name: str, argv: list[str], out: Path) -> str:
    """Run one benchmark from the repository root; its stdout, also saved to OUT/NAME.txt."""
    print(f"== {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit code {proc.returncode}")
    (out / f"{name}.txt").write_text(proc.stdout)
    return proc.stdout


def aflw_targets(text: str, out: Path) -> str:
    """Issue 10's AFLW2000-3D targets, met or missed, for the default ``--landmarks auto``
    (falling back to the first row of an older JSON without it)."""
    path = out / "aflw2000.json"
    if not path.is_file():
        return ""
    res = json.loads(path.read_text())

    def verdicts(row: dict) -> str:
        """Each issue-10 limit against ``row`` (an `AFLW2000Result` JSON), met or missed."""
        def verdict(v: float, lim: float) -> str:
            return f"{'met' if v <= lim else '**missed**'}: {v:.2f} %"

        bal = 100 * row["balanced_2d"]
        per = ", ".join(f"{name} ≤ {lim} ({verdict(100 * v, lim)})" for name, lim, v in zip(
            ("0-30", "30-60", "60-90"), (3.0, 4.0, 5.5), row["bucket_nme_2d"], strict=True))
        miss = 100 * row["num_missing"] / max(row["num_images"], 1)
        return (f"balanced NME ≤ 4.0 % ({verdict(bal, 4.0)}), {per}; ≤ 1 % of images without "
                f"a face ({verdict(miss, 1.0)})")

    text = (f"Targets of issue 10 for the default (`auto`): "
            f"{verdicts(res.get('auto', res['facefit']))}.")
    other = res.get("auto_another_face_miss")
    if other is None:
        return text
    return (text + " Counting an image whose scored face is another person's as a miss (the "
            f"`auto, another face = miss` row): {verdicts(other)}.")


def block(shown: str, text: str, stamp: str, extra: str = "") -> str:
    """The generated text between a pair of markers."""
    body = f"`{shown}` ({stamp}):\n\n```\n{text.rstrip()}\n```\n"
    return body + (f"\n{extra}\n" if extra else "")


def replace_block(readme: str, name: str, content: str) -> str:
    """``readme`` with the text between ``<!-- table:name -->`` and the next
    ``<!-- /table -->`` replaced by ``content``; ValueError if the markers are missing."""
    start = f"<!-- table:{name} -->"
    pat = re.compile(re.escape(start) + r"\n.*?<!-- /table -->", re.S)
    if not pat.search(readme):
        raise ValueError(f"README has no {start} ... <!-- /table --> block")
    return pat.sub(lambda _: f"{start}\n{content.rstrip()}\n<!-- /table -->", readme, count=1)


def _stamp() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"commit {commit}, measured {_dt.date.today().isoformat()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench"),
                    help="folder for outputs (relative to the repository root)")
    ap.add_argument("--only", default=",".join(NAMES), help="comma-separated benchmarks")
    ap.add_argument("--reuse", action="store_true",
                    help="use the saved OUT/NAME.txt outputs instead of running")
    ap.add_argument("--synthetic-n", type=int, default=100)
    ap.add_argument("--photometric-n", type=int, default=100,
                    help="synthetic faces refined photometrically (about 0.5 s each on a CPU)")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args()
    out = args.out if args.out.is_absolute() else ROOT / args.out
    shown_out = args.out
    cmds = commands(out, args.synthetic_n, args.photometric_n)
    shown = commands(shown_out, args.synthetic_n, args.photometric_n)
    extras: dict[str, Callable[[str, Path], str]] = {"aflw2000": aflw_targets}
    readme = args.readme.read_text()
    stamp = _stamp()
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in cmds:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
        saved = out / f"{name}.txt"
        if args.reuse and saved.is_file():
            text = saved.read_text()
        else:
            text = run(name, cmds[name][0], out)
        extra = extras[name](text, out) if name in extras else ""
        readme = replace_block(readme, name, block(shown[name][1], text, stamp, extra))
        args.readme.write_text(readme)  # after each benchmark: a later failure keeps it
        print(text.rstrip())
    print(f"updated {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
