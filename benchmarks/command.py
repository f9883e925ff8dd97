"""`bosky --pass` against a plain boto3 put_events script, in the same run.

Both send one event to the same local EventBridge emulator, as whole
processes (interpreter start included), alternating so machine noise hits
both alike. Prints the median wall time and peak RSS of each and the ratios.
Targets (issue 2): bosky's wall at most 0.6 of the plain script's, peak
memory at most 40 MB.

    ./dev bench            (all benchmarks)
    .venv/bin/python benchmarks/command.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measure import measure  # noqa: E402
from tests.support.emulator import EventBridgeEmulator, make_consumer  # noqa: E402
from tests.support.fixtures import bosky_command, make_aws_env  # noqa: E402

PLAIN = """
import boto3, json
boto3.client("events").put_events(Entries=[{
    "Source": "bench", "DetailType": "User Data",
    "Detail": json.dumps({"Status": "pass", "Message": "deployed"})}])
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with EventBridgeEmulator() as emulator, tempfile.TemporaryDirectory() as home:
        consumer = make_consumer(emulator, pattern={"source": ["bench"]})
        env = make_aws_env(emulator.url, Path(home))
        # A plain botocore client reads only these names (not AWS_REGION, not _EVENTS).
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"]
        env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = emulator.url
        env["BOSKY_SPOOL_DIR"] = str(Path(home) / "spool")
        commands = {
            "bosky --pass": [*bosky_command(env), "--pass", "deployed", "--project", "bench"],
            "plain boto3 script": [sys.executable, "-c", PLAIN],
        }
        results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm the page cache for both
            measure(cmd, env)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                results[name].append(measure(cmd, env))
        consumer.close()
    medians = {name: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r))
               for name, r in results.items()}
    print(f"{'command':<22}{'median wall':>14}{'peak RSS':>12}   ({args.runs} runs each)")
    for name, (wall, mem) in medians.items():
        print(f"{name:<22}{wall * 1000:>11.0f} ms{mem:>9.1f} MB")
    (bw, bm), (pw, pm) = medians["bosky --pass"], medians["plain boto3 script"]
    print(f"ratio bosky/plain: wall {bw / pw:.2f} (target <= 0.60), memory {bm / pm:.2f}; "
          f"bosky peak {bm:.1f} MB (target <= 40 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
