"""Mutation testing of the pure cores (``make mutation``): how many wrong versions the tests catch.

cosmic-ray makes mutants of each module in :data:`MODULES` with the operators of
:data:`OPERATORS` (flipped comparisons, ``and``/``or``, negations, ±1 on constants, swapped
booleans, ``break``/``continue`` and loops that never run), runs a fixed-seed sample of them
against the module's fast tests (no database, no property tests, so that a result never depends
on a random draw), and prints each survivor and, per module, the share killed of the mutants not
judged equivalent (``tests/mutation_equivalents.yaml``). It exits 1 when a module is below
``--min-score``.

The run happens in copies of ``app`` and ``tests`` under ``.cache/mutation``, one per worker,
because cosmic-ray rewrites the module on disk while its tests run: the work tree is never
touched, so an interrupted run leaves nothing mutated behind. ``tests/README.md`` has the
figures.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = ROOT / ".cache" / "mutation"
COSMIC_RAY = str(Path(sys.executable).parent / "cosmic-ray")

# Each module with the tests that are meant to pin it down.
MODULES: dict[str, tuple[str, ...]] = {
    "app/reconciler/status.py": ("tests/reconciler",),
    "app/policies/engine.py": ("tests/policies",),
    "app/rendering/common.py": ("tests/rendering",),
}
# Property tests draw new examples on every run, and a mutant's fate must not depend on the draw;
# test_crd_schemas checks where the committed CRD schemas came from (tools/), not common.py.
IGNORED_TESTS = (
    "tests/policies/test_properties.py",
    "tests/rendering/test_properties.py",
    "tests/rendering/test_crd_schemas.py",
)

# cosmic-ray's operators that change what code decides. Left out: binary arithmetic (mostly
# ``|`` in type annotations, which ``from __future__ import annotations`` never evaluates, and
# ``+`` joining message text), ``==``<->``is`` and ``!=``<->``is not`` (the same test for None,
# booleans and small integers), decorator removal and exception replacement.
OPERATORS = re.compile(
    r"core/("
    r"ReplaceComparisonOperator_(?!Eq_Is$|NotEq_IsNot$|Is_Eq$|IsNot_NotEq$)\w+"
    r"|ReplaceAndWithOr|ReplaceOrWithAnd|AddNot|ReplaceUnaryOperator_Delete_Not"
    r"|NumberReplacer|ReplaceTrueWithFalse|ReplaceFalseWithTrue"
    r"|ReplaceBreakWithContinue|ReplaceContinueWithBreak|ZeroIterationForLoop"
    r")"
)
SEED = 20
# A test run takes 2-5 s; a mutant that loops forever is killed (counted as caught) at this.
TIMEOUT = 60.0

# Survivors judged equivalent, each group with why (tests/mutation_equivalents.yaml). A mutant is
# matched by module, operator, original line and mutated line: a change to the line makes the
# entry stale, and the mutant counts as a survivor again until it is judged anew.
EQUIVALENTS_FILE = Path(__file__).with_name("mutation_equivalents.yaml")


def load_equivalents(path: Path = EQUIVALENTS_FILE) -> frozenset[tuple[str, str, str, str]]:
    document: dict[str, list[dict[str, Any]]] = yaml.safe_load(path.read_text())
    return frozenset(
        (module, operator, old, new)
        for module, groups in document.items()
        for group in groups
        for operator, old, new in group["mutants"]
    )


EQUIVALENT = load_equivalents()


def test_command(tests: tuple[str, ...]) -> str:
    """Stop at the first failure; no plugin autoloading and no conftest (nor its database)."""
    ignored = " ".join(f"--ignore={path}" for path in IGNORED_TESTS)
    return (
        f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -x -q "
        f"-p no:cacheprovider --noconftest -W ignore::pytest.PytestConfigWarning "
        f"{ignored} {' '.join(tests)}"
    )


def config_text(module: str, tests: tuple[str, ...], *, urls: list[str], timeout: float) -> str:
    worker_urls = ", ".join(f'"{url}"' for url in urls)
    return (
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command(tests)}"\n'
        "\n[cosmic-ray.distributor]\n"
        'name = "http"\n'
        "\n[cosmic-ray.distributor.http]\n"
        f"worker-urls = [{worker_urls}]\n"
    )


def make_copies(count: int) -> list[Path]:
    if WORKSPACE.exists():
        shutil.rmtree(WORKSPACE)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    copies = []
    for index in range(count):
        copy = WORKSPACE / f"worker-{index}"
        for name in ("app", "tests"):
            shutil.copytree(ROOT / name, copy / name, ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
        # The editable install points `app` at the work tree; the copy must win on sys.path.
        where = subprocess.run(
            [sys.executable, "-c", "import app; print(app.__file__)"],
            cwd=copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(where).is_relative_to(copy):
            raise SystemExit(f"the tests in {copy} would import {where}, not the copy")
        copies.append(copy)
    return copies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_worker(port: int) -> None:
    """cosmic-ray's HTTP worker, on the loopback interface only: ``cosmic-ray http-worker``
    listens on every interface, and a request to it names a command to run."""
    from aiohttp import web
    from cosmic_ray.distribution.http import handle_mutate_and_test

    app = web.Application()
    app.add_routes([web.post("/", handle_mutate_and_test)])
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def start_workers(copies: list[Path]) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """One worker per copy, on a free loopback port."""
    workers, ports = [], []
    for copy in copies:
        port = free_port()
        with (WORKSPACE / f"{copy.name}.log").open("wb") as log:
            command = [sys.executable, "-m", "tests.mutation", "--serve", str(port)]
            workers.append(
                subprocess.Popen(command, cwd=copy, stdout=log, stderr=subprocess.STDOUT)
            )
        ports.append(port)
    for port in ports:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no cosmic-ray worker on port {port}") from None
                time.sleep(0.2)
    return workers, [f"http://127.0.0.1:{port}" for port in ports]


def keep_sample(session: Path, *, sample: int | None) -> tuple[int, int]:
    """Mark every mutant outside the operators and the sample as skipped; return (kept, all).

    The sample is drawn from the mutants in a stable order (operator, occurrence), so that the
    same code gives the same sample (cosmic-ray's job ids are random).
    """
    skipped = WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = sorted(
            db.pending_work_items,
            key=lambda item: (item.mutations[0].operator_name, item.mutations[0].occurrence),
        )
        eligible = [item for item in items if OPERATORS.fullmatch(item.mutations[0].operator_name)]
        kept = eligible
        if sample is not None and sample < len(eligible):
            kept = random.Random(SEED).sample(eligible, sample)
        keep = {item.job_id for item in kept}
        db.set_multiple_results([i.job_id for i in items if i.job_id not in keep], skipped)
    return len(kept), len(eligible)


@dataclass
class Score:
    module: str
    eligible: int
    killed: int
    survived: list[str]  # "line operator: old -> new"
    equivalent: list[str]  # survivors listed in EQUIVALENT
    errors: int
    seconds: float

    @property
    def ran(self) -> int:
        return self.killed + len(self.survived) + len(self.equivalent)

    @property
    def percent(self) -> float:
        """Killed, of the mutants that are not equivalent."""
        judged = self.killed + len(self.survived)
        return 100.0 * self.killed / judged if judged else 100.0


def _changed_line(diff: str) -> tuple[str, str]:
    lines = diff.splitlines()
    old = next((x[1:].strip() for x in lines if x.startswith("-") and not x.startswith("---")), "")
    new = next((x[1:].strip() for x in lines if x.startswith("+") and not x.startswith("+++")), "")
    return old, new


def score(session: Path, module: str, *, eligible: int, seconds: float) -> Score:
    killed = errors = 0
    survived, equivalent = [], []
    with use_db(str(session), WorkDB.Mode.open) as db:
        completed: list[tuple[Any, WorkResult]] = list(db.completed_work_items)
    for item, result in sorted(completed, key=lambda c: c[0].mutations[0].start_pos):
        if result.worker_outcome == WorkerOutcome.SKIPPED:
            continue
        if result.worker_outcome != WorkerOutcome.NORMAL:
            errors += 1
        elif result.test_outcome != TestOutcome.SURVIVED:
            killed += 1  # including a mutant that cannot even be imported (incompetent)
        else:
            mutation = item.mutations[0]
            operator = mutation.operator_name.removeprefix("core/")
            old, new = _changed_line(result.diff or "")
            line = f"{mutation.start_pos[0]} {operator}: {old}  ->  {new}"
            if (module, operator, old, new) in EQUIVALENT:
                equivalent.append(line)
            else:
                survived.append(line)
    return Score(module, eligible, killed, survived, equivalent, errors, seconds)


def run_module(
    module: str, tests: tuple[str, ...], *, copies: list[Path], urls: list[str], sample: int | None
) -> Score:
    name = Path(module).stem
    config = WORKSPACE / f"{name}.toml"
    session = WORKSPACE / f"{name}.sqlite"
    config.write_text(config_text(module, tests, urls=urls, timeout=TIMEOUT))
    baseline = subprocess.run(
        [COSMIC_RAY, "baseline", str(config)], cwd=copies[0], capture_output=True, text=True
    )
    if baseline.returncode != 0:
        raise SystemExit(f"the tests of {module} fail before any mutation:\n{baseline.stdout}")
    subprocess.run([COSMIC_RAY, "init", str(config), str(session)], cwd=copies[0], check=True)
    kept, eligible = keep_sample(session, sample=sample)
    print(f"{module}: {kept} of {eligible} mutants, {len(urls)} workers", flush=True)
    started = time.monotonic()
    subprocess.run([COSMIC_RAY, "exec", str(config), str(session)], cwd=copies[0], check=True)
    return score(session, module, eligible=eligible, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=150, help="mutants per module (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-score", type=float, default=90.0)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("modules", nargs="*", help="a subset of the modules (default: all)")
    args = parser.parse_args(argv)
    if args.serve:
        serve_worker(args.serve)
        return 0
    modules = {m: t for m, t in MODULES.items() if not args.modules or m in args.modules}
    if not modules:
        parser.error(f"no such module; choose among {', '.join(MODULES)}")

    copies = make_copies(args.workers)
    workers, urls = start_workers(copies)
    try:
        scores = [
            run_module(module, tests, copies=copies, urls=urls, sample=args.sample or None)
            for module, tests in modules.items()
        ]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    print()
    for s in scores:
        print(f"{s.module}: {len(s.survived)} survived, {len(s.equivalent)} equivalent")
        for line in s.survived:
            print(f"  survived    {line}")
        for line in s.equivalent:
            print(f"  equivalent  {line}")
    print()
    header = ("module", "mutants", "killed", "survived", "equivalent", "score", "time")
    print("{:<28} {:>9} {:>7} {:>9} {:>11} {:>7} {:>6}".format(*header))
    for s in scores:
        mutants = f"{s.ran}/{s.eligible}"
        errors = f"  ({s.errors} errors)" if s.errors else ""
        print(
            f"{s.module:<28} {mutants:>9} {s.killed:>7} {len(s.survived):>9} "
            f"{len(s.equivalent):>11} {s.percent:>6.1f}% {s.seconds:>5.0f}s{errors}"
        )
    low = [s.module for s in scores if s.percent < args.min_score or s.errors]
    if low:
        print(f"below {args.min_score:.0f}% killed, or with errors: {', '.join(low)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
