"""How well redaction works and what it costs.

- Recall per kind and overall: the share of the corpus's secrets
  (``tests/support/secrets.py``: every format's shape, in bare and assigned
  contexts, and private keys whole or cut by the tail) gone from the output.
- Precision: the share of ordinary lines (``tests/data/redaction/``: ids,
  ARNs, digests, UUIDs, fingerprints, public keys and certificates, S3 URLs,
  versions, prose that says "password", and two real boots' cloud-init
  output) that pass unchanged.
- Cost per line: redacting a realistic tail (the real cloud-init output
  repeated to the reporter's 256 KiB read window), median of N, as a ratio
  against the redactor before this one (from git history, when there is
  one) and against the tail's own work without redaction, all in this run.
- Import and first-use cost, in a fresh interpreter that has loaded what
  the reporter has anyway (``cc_bosky.boot.verdict``): importing the module,
  then a command's one-line message, then a real boot's tail (each rule is
  compiled when a text first needs it), time and peak RSS.

    .venv/bin/python benchmarks/redact.py [--runs 15] [--show-misses]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cc_bosky.redact import redact  # noqa: E402
from cc_bosky.text import printable  # noqa: E402
from tests.support import secrets  # noqa: E402

DATA = REPO / "tests" / "data" / "redaction"
READ_WINDOW = 256 * 1024  # what the reporter's tail reads and redacts
# The redactor this one replaced: the baseline for the cost per line.
PREVIOUS = ("40c2c64", "cc_bosky/boot/redact.py")

PROBE = """
import time
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
import cc_bosky.boot.verdict  # what the reporter has loaded anyway
t = time.perf_counter(); h = hwm()
import cc_bosky.redact as r
t1 = time.perf_counter(); h1 = hwm()
r.redact("deploy failed: artifact download returned HTTP 404 (attempt 3 of 3)")
t2 = time.perf_counter(); h2 = hwm()
r.redact(open({log!r}).read())
t3 = time.perf_counter(); h3 = hwm()
print((t1 - t) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, h1 - h, h2 - h1, h3 - h2, h3)
"""


def quality(show_misses: bool) -> None:
    per: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0])
    misses: List[Tuple[str, str]] = []
    for sample in secrets.corpus():
        out = redact(sample.text)
        gone = not any(secret in out for secret in sample.secrets)
        per[sample.kind][0] += gone
        per[sample.kind][1] += 1
        if not gone:
            misses.append((sample.kind, sample.text))
    print("recall per kind (secrets gone / samples):")
    for kind, (gone, total) in sorted(per.items()):
        print(f"  {kind:34} {gone:4d}/{total:<4d} {100 * gone / total:6.1f}%")
    gone = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    print(f"recall: {gone}/{total} = {100 * gone / total:.1f}% over {len(per)} kinds")
    if show_misses:
        for kind, text in misses:
            print(f"  missed {kind}: {text[:160]!r}")
    intact = 0
    lines_total = 0
    for name in ("ordinary.txt", "cloud-init-output.log"):
        lines = secrets.ordinary_lines(str(DATA / name))
        out = redact("\n".join(lines)).split("\n")
        same = sum(a == b for a, b in zip(lines, out)) if len(out) == len(lines) else 0
        intact += same
        lines_total += len(lines)
        for a, b in zip(lines, out):
            if a != b and show_misses:
                print(f"  changed: {a[:120]!r} -> {b[:120]!r}")
    print(f"precision (ordinary lines intact): {intact}/{lines_total} = "
          f"{100 * intact / lines_total:.1f}%")
    before = previous_redactor()
    if before is not None:  # the same corpus through the redactor this one replaced
        samples = secrets.corpus()
        old_gone = sum(not any(x in before(s.text) for x in s.secrets) for s in samples)
        old_intact = 0
        for name in ("ordinary.txt", "cloud-init-output.log"):
            lines = secrets.ordinary_lines(str(DATA / name))
            old_intact += sum(a == b for a, b in zip(lines, before("\n".join(lines)).split("\n")))
        print(f"previous redactor ({PREVIOUS[0]}), same corpus: recall {old_gone}/{len(samples)} = "
              f"{100 * old_gone / len(samples):.1f}%, precision {old_intact}/{lines_total}")


def realistic_tail() -> str:
    lines = secrets.ordinary_lines(str(DATA / "cloud-init-output.log"))
    text = ""
    while len(text) < READ_WINDOW:
        text += "\n".join(lines) + "\n"
    return text[:READ_WINDOW].rsplit("\n", 1)[0]


def previous_redactor() -> Optional[Callable[[str], str]]:
    commit, path = PREVIOUS
    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{path}"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("previous_redact")
    exec(compile(source, path, "exec"), module.__dict__)  # our own history
    return module.__dict__["redact"]  # type: ignore[no-any-return]


def median_time(fn: Callable[[str], object], text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cost(runs: int) -> None:
    text = realistic_tail()
    lines = text.count("\n") + 1
    redact(text)  # compile the rules outside the timing

    def tail_work(t: str) -> object:  # what logtail does with the text besides redacting
        return [printable(line, one_line=True) for line in t.split("\n")]

    ours = median_time(redact, text, runs)
    plain = median_time(tail_work, text, runs)
    print(f"cost: {len(text) // 1024} KiB, {lines} lines of real cloud-init output, "
          f"median of {runs}")
    print(f"  redact: {ours * 1e3:.1f} ms = {ours / lines * 1e6:.1f} us per line")
    print(f"  the tail's other work (split, escape): {plain * 1e3:.1f} ms; "
          f"redaction / that = {ours / plain:.2f}")
    before = previous_redactor()
    if before is not None:
        old = median_time(before, text, runs)
        print(f"  previous redactor ({PREVIOUS[0]}): {old * 1e3:.1f} ms = "
              f"{old / lines * 1e6:.1f} us per line; ratio now / before = {ours / old:.2f}")
    else:
        print("  previous redactor: not in this checkout's history (no git); skipped")


def import_cost(runs: int) -> None:
    results = []
    probe = PROBE.format(log=str(DATA / "cloud-init-output.log"))
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             cwd=str(REPO), check=True).stdout.split()
        results.append([float(x) for x in out])
    med = [statistics.median(r[i] for r in results) for i in range(7)]
    print(f"fresh process, over the reporter's modules (median of {runs}):")
    print(f"  import cc_bosky.redact: {med[0]:.1f} ms, +{med[3]:.2f} MB peak")
    print(f"  first call on a one-line command message (compiles what it needs): "
          f"{med[1]:.1f} ms, +{med[4]:.2f} MB peak")
    print(f"  then a real boot's tail (compiles the rules it needs): {med[2]:.1f} ms, "
          f"+{med[5]:.2f} MB peak (process peak {med[6]:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    quality(args.show_misses)
    cost(args.runs)
    import_cost(min(args.runs, 7))


if __name__ == "__main__":
    main()
