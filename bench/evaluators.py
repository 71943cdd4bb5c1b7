"""CPU per policy decision of each Rego evaluator that could serve the embedded engine, in one run.

Issue 17's closed-loop goal is missed by about as much CPU as the policy's evaluation costs,
so the question is whether another in-process evaluator decides faster than the one the
embedded engine uses (opa-eval 0.1.1, which bundles regorus 0.2.8). Each evaluator decides
every input of the shipped policy's own decision cases (policies/cases, those strict enough
to reach an engine), as the text the embedded engine hands regorus, against the shipped
policy and data:

- opa-eval: the embedded engine's own (always measured; the ratios' baseline);
- regorus: any Python build of regorus (`import regorus`), run by the interpreter given
  with --regorus-python (PyPI has only forks of it, each installed as `regorus`: one
  virtual environment each);
- OPA's Wasm: the policy compiled by `opa build -t wasm` (OPA on PATH), evaluated by
  opa-py-wasm on wasmtime, run by the interpreter given with --wasm-python (the host
  supplies `time.parse_rfc3339_ns`, which OPA's Wasm leaves to it).

    .venv/bin/python bench/evaluators.py [--rounds 5] [--evict-mb 4]
        [--regorus-python /path/bin/python ...] [--wasm-python /path/bin/python]

Each evaluator runs in a process of its own, rounds alternating with the others. A round
decides every input in turn, twice: back to back ("warm"), then with --evict-mb of memory
written between decisions ("evicted"), as a gateway's other work does between two
decisions. It reads the thread's CPU time around each decision. Printed per evaluator:
whether it gave opa-eval's decision on every input, its CPU us a decision (median over
rounds, min-max), and its ratio to opa-eval's in the same round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Run by every evaluator's interpreter, which has the evaluator and nothing of facegate's:
# standard library only. argv: kind, workdir, evict_mb. Prints one JSON line: its decisions
# and one round's figures.
RUNNER = r"""
import json, sys, time
from datetime import datetime
from importlib import metadata

kind, workdir, evict_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
inputs = json.load(open(f"{workdir}/inputs.json"))
data_text = open(f"{workdir}/data.json").read()
module_path = f"{workdir}/facegate.rego"

if kind == "opa-eval":
    import opa_eval
    evaluator = opa_eval.OpaEval(module_path, data_json=data_text, query="data.facegate.decision")
    decide = evaluator.evaluate_parsed
elif kind == "regorus":
    import regorus
    engine = regorus.Engine()
    engine.add_policy("facegate.rego", open(module_path).read())
    engine.add_data_json(data_text)
    def decide(text):
        engine.set_input_json(text)
        return engine.eval_rule("data.facegate.decision")
elif kind == "opa-wasm":
    from opapywasm import OpaWasmPolicy
    policy = OpaWasmPolicy.from_wasm_file(f"{workdir}/policy.wasm")
    def parse_rfc3339_ns(*args):
        stamp = datetime.fromisoformat(args[-1].replace("Z", "+00:00"))
        return int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000
    policy.register_builtin("time.parse_rfc3339_ns", parse_rfc3339_ns)
    policy.set_data(json.loads(data_text))
    def decide(text):
        return policy.evaluate(json.loads(text))
else:
    raise SystemExit(f"unknown evaluator {kind}")

module = {"opa-eval": "opa_eval", "regorus": "regorus", "opa-wasm": "opapywasm"}[kind]
version = ", ".join(
    f"{name} {metadata.version(name)}" for name in metadata.packages_distributions()[module]
)
decisions = [decide(text) for text in inputs]
scratch = bytearray(evict_mb * 2**20)
lines = b"\1" * len(range(0, len(scratch), 64))
figures = {}
for mode in ("warm", "evicted"):
    spent = 0.0
    for text in inputs:
        if mode == "evicted":
            scratch[::64] = lines  # one write a cache line
        started = time.thread_time()
        decide(text)
        spent += time.thread_time() - started
    figures[mode] = spent / len(inputs) * 1e6
print(json.dumps({"version": version, "decisions": decisions, "figures": figures}))
"""


def prepare(workdir: Path) -> int:
    """The shipped policy, its data and its cases' inputs in `workdir`; how many inputs."""
    from pydantic_core import to_json

    from gateway.policy.bundle import load_bundle
    from gateway.policy.cases import CASES_DIR, load_cases
    from gateway.policy.contract import strict_input_problems

    bundle = load_bundle(REPO / "policies")
    (workdir / "facegate.rego").write_text(bundle.module, encoding="utf-8")
    (workdir / "data.json").write_text(json.dumps(bundle.data_document()), encoding="utf-8")
    inputs = []
    for case in load_cases(REPO / "policies" / CASES_DIR):
        document = case.input.model_dump(mode="json", warnings=False)
        if not strict_input_problems(document):  # refused before any engine runs
            inputs.append(to_json(document, inf_nan_mode="null").decode())
    (workdir / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    return len(inputs)


def build_wasm(workdir: Path) -> bool:
    opa = shutil.which("opa")
    if opa is None:
        print("opa is not on PATH: OPA's Wasm is skipped")
        return False
    subprocess.run(
        [opa, "build", "-t", "wasm", "-e", "facegate/decision", "facegate.rego", "data.json",
         "-o", "bundle.tar.gz"],
        cwd=workdir, check=True,
    )  # fmt: skip
    with tarfile.open(workdir / "bundle.tar.gz") as bundle:
        module = bundle.extractfile("/policy.wasm")
        assert module is not None
        (workdir / "policy.wasm").write_bytes(module.read())
    return True


def run(python: str, kind: str, workdir: Path, evict_mb: int) -> dict[str, Any]:
    done = subprocess.run(
        [python, "-c", RUNNER, kind, str(workdir), str(evict_mb)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} ({python}) failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--evict-mb", type=int, default=4, help="written between decisions")
    parser.add_argument("--regorus-python", action="append", default=[], metavar="PYTHON")
    parser.add_argument("--wasm-python", metavar="PYTHON")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="facegate-evaluators-"))
    count = prepare(workdir)
    evaluators = [("opa-eval", sys.executable)]
    evaluators += [("regorus", python) for python in options.regorus_python]
    if options.wasm_python and build_wasm(workdir):
        evaluators.append(("opa-wasm", options.wasm_python))

    # Rounds alternate the evaluators' order, one process each per round, so a shared
    # machine's drift hits all alike; each process decides every input once before timing.
    results: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(evaluators))}
    for round_number in range(options.rounds):
        order = list(range(len(evaluators)))
        for i in order if round_number % 2 == 0 else order[::-1]:
            kind, python = evaluators[i]
            results[i].append(run(python, kind, workdir, options.evict_mb))

    print(f"{count} decision inputs (the strict ones of policies/cases); {options.rounds} rounds;")
    print("CPU us a decision, median (min-max); ratio to opa-eval's in the same round")
    baseline = results[0]
    for i, (kind, _) in enumerate(evaluators):
        rounds = results[i]
        agree = sum(
            a == b for a, b in zip(rounds[0]["decisions"], baseline[0]["decisions"], strict=True)
        )
        print(f"  {kind} ({rounds[0]['version']}): opa-eval's decision on {agree}/{count} inputs")
        for mode in ("warm", "evicted"):
            cpu = [r["figures"][mode] for r in rounds]
            ratio = [
                r["figures"][mode] / b["figures"][mode]
                for r, b in zip(rounds, baseline, strict=True)
            ]
            print(f"    {mode:<8} {spread(cpu)} us   ratio {spread(ratio)}")


if __name__ == "__main__":
    main()
