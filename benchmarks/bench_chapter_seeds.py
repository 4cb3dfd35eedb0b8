"""Do a chapter's claims survive other seeds? Re-execute it with papermill under new seeds and report.

    PYTHONPATH=. python benchmarks/bench_chapter_seeds.py --chapter 04_deepcluster --shifts 3 6 9

Floating-point kernels differ between machines, so a chapter's numbers move when it runs elsewhere;
its claims (``dctutor.evidence.claim``) must not. Each run shifts every seed parameter of the chapter
by ``--shift`` (``seed``, ``seeds``, ``replicates``), executes the chapter at its defaults otherwise,
and records whether every claim held and what the claim lines printed. Prints a markdown table and
saves the rows to ``--json``.
"""
from __future__ import annotations

import argparse
import ast
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm

from dctutor.runs import write_json

BOOK = Path(__file__).resolve().parents[1] / "book"


def shifted(parameters: dict, shift: int) -> dict:
    """The chapter's seed parameters, each moved by ``shift``."""
    out = {}
    for name, info in parameters.items():
        if name in ("seed",):
            out[name] = int(info["default"]) + shift
        elif name in ("seeds", "replicates", "dc_seeds"):
            out[name] = [int(s) + shift for s in ast.literal_eval(info["default"])]
    return out


def claim_lines(path: Path) -> list[str]:
    """The claim verdicts a chapter printed (lines starting 'holds' or 'not checked'), each joined
    back from the lines :func:`dctutor.evidence.claim` wrapped it to."""
    nb = nbformat.read(path, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return [line for line in text.replace("\n  ", " ").splitlines() if line.startswith(("holds:", "not checked"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chapter", default="04_deepcluster")
    ap.add_argument("--shifts", type=int, nargs="+", default=[3, 6, 9])
    ap.add_argument("--json", default=None, help="default: benchmarks/results/chapter_seeds_<chapter>.json")
    args = ap.parse_args()
    source = BOOK / f"{args.chapter}.ipynb"
    params = pm.inspect_notebook(str(source))
    path = args.json or f"benchmarks/results/chapter_seeds_{args.chapter}.json"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shift in args.shifts:
            values = shifted(params, shift) | ({"save_to": ""} if "save_to" in params else {})
            out = Path(tmp) / f"{shift}.ipynb"
            start = time.perf_counter()
            try:
                pm.execute_notebook(str(source), str(out), parameters=values, cwd=str(BOOK), kernel_name="python3",
                                    progress_bar=False)
                error = None
            except pm.PapermillExecutionError as err:
                error = f"{err.ename}: {err.evalue}"[:300]
            claims = claim_lines(out) if out.exists() else []
            # A claim outside its checked range prints its verdict instead of raising.
            unchecked = [line for line in claims if "does NOT hold here" in line]
            error = error or (unchecked[0] if unchecked else None)
            rows.append({"shift": shift, "parameters": values, "held": error is None, "error": error,
                         "claims": claims,
                         "minutes": (time.perf_counter() - start) / 60})
            print(f"shift {shift}: {'all claims held' if error is None else error}", flush=True)
            # Saved after every shift: a long run stopped halfway keeps what it measured.
            write_json(path, {"chapter": args.chapter, "rows": rows})
    print(f"\n| shift | seeds | claims held | minutes |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['shift']} | {r['parameters']} | {'yes' if r['held'] else 'NO'} | {r['minutes']:.1f} |")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
