"""Mutation testing of the engine and the NATS layer's decision code (``nox -s mutation``).

mutmut 3 imports mutated code from ``mutants/src`` (it knows ``src/`` and ``./`` layouts, not
maturin's ``python/``), so this script stages a copy of the project with the package under
``src/``, the compiled extension beside it, and a ``[tool.mutmut]`` table naming the modules
below. Then it runs mutmut and writes a per-module score with every survivor's diff.

    python dev/mutation.py stage DIR [MODULE ...]  # copy the project into DIR for `mutmut run`
    python dev/mutation.py report DIR    # after `mutmut run` in DIR: score + survivors (Markdown)

Survivors that are equivalent mutants (no behaviour can tell them apart) are listed in
``dev/equivalent-mutants/`` with the reason; the score counts them as neither killed nor alive.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Module -> the test files that exercise it. mutmut maps each test to the functions it runs
# (coverage) and runs only those tests against a mutant of a function.
TARGETS: dict[str, list[str]] = {
    # The engine.
    "_core/_supervision.py": ["test_supervision.py", "test_testing_kit.py"],
    "_core/_timers.py": ["test_supervision.py", "test_testing_kit.py"],
    "_core/_capability.py": ["test_capabilities.py", "test_transport_policy.py"],
    "_core/_cell.py": [
        "test_cell.py",
        "test_actor.py",
        "test_supervision.py",
        "test_testing_kit.py",
        "test_virtual.py",
        "test_telemetry.py",  # trace contexts carried through mailboxes and suspended handlers
        "test_actor_events.py",  # lifecycle signals and the health verdict
    ],
    "_core/_ref.py": [
        "test_ref.py",
        "test_actor.py",
        "test_virtual.py",
        "test_telemetry.py",
        "test_capabilities.py",
    ],
    "_core/_virtual.py": ["test_virtual.py"],
    "_core/_actor.py": [
        "test_actor_class.py",
        "test_actor.py",
        "test_supervision.py",
        "test_actor_events.py",
    ],
    # The NATS layer's decisions: where a key lives, who holds a shard, which name wins.
    "_nats/_placement.py": ["test_placement.py"],
    "_nats/_shards.py": ["test_shards.py", "test_placement.py"],
    # The registry's decisions against in-memory buckets (test_transport.py runs it on a real
    # server, a hundred times slower per mutant). test_wire.py's name-key test is repeated in
    # test_registry.py: test_wire.py fails when run twice in one process, as mutmut does.
    "_nats/_registry.py": ["test_registry.py"],
}

# Lines that are diagnostics, not behaviour: log calls (their text and level). The engine's
# modules name their logger ``log``, the NATS layer's ``_log``.
IGNORED_PATTERNS = [r"^\s*_?log\.(debug|info|warning|error|exception)\("]

# mutmut's verdicts that count as a kill: a test failed, or the mutant hung or crashed.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}

# Survivors judged equivalent (no behaviour can tell them from the original), one file per
# module: dev/equivalent-mutants/<module>.toml, each line `"<mutant name>" = "<why>"`.
EQUIVALENT_DIR = Path(__file__).resolve().parent / "equivalent-mutants"


def load_equivalent() -> dict[str, str]:
    """Every mutant judged equivalent, with the reason."""
    import tomllib

    found: dict[str, str] = {}
    for path in sorted(EQUIVALENT_DIR.glob("*.toml")):
        found.update(tomllib.loads(path.read_text()))
    return found


def stage(dest: Path, modules: list[str]) -> None:
    """Copy the project into ``dest`` with the package under ``src/`` and mutmut configured.

    ``modules`` (default: all of ``TARGETS``) limits the run to some of the modules.
    """
    unknown = set(modules) - set(TARGETS)
    if unknown:
        sys.exit(f"not a mutation target: {sorted(unknown)}; targets: {sorted(TARGETS)}")
    targets = {m: TARGETS[m] for m in modules or TARGETS}
    import swarm_actors._tuplecore as core  # the installed (release) build of the extension

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(
        ROOT / "python" / "swarm_actors",
        dest / "src" / "swarm_actors",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    shutil.copy2(core.__file__, dest / "src" / "swarm_actors" / Path(core.__file__).name)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    tests = sorted(
        {f"tests/{t}" for files in targets.values() for t in files if (ROOT / "tests" / t).exists()}
    )
    table = {
        "source_paths": ["src/swarm_actors"],
        "only_mutate": [f"src/swarm_actors/{m}" for m in targets],
        "pytest_add_cli_args_test_selection": tests,
        # A mutant that hangs a test costs 10 s, not the suite's 120 s timeout.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-x", "-q", "-o", "timeout=10"],
        "do_not_mutate_patterns": IGNORED_PATTERNS,
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    (dest / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n")


def report(where: Path) -> int:
    """Print the score per module and every survivor; exit 1 below 90% overall."""
    from mutmut.stats import status_by_exit_code

    equivalents = load_equivalent()
    meta_dir = where / "mutants" / "src" / "swarm_actors"
    rows, survivors = [], []
    total_killed = total_counted = total_equivalent = 0
    for module in TARGETS:
        meta = meta_dir / f"{module}.meta"
        if not meta.exists():
            rows.append(f"| `{module}` | - | - | - | - | - | not run |")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = {k: status_by_exit_code[c] for k, c in codes.items()}
        equivalent = [k for k, s in status.items() if s == "survived" and k in equivalents]
        # Alive: survived, never run by any test, or not checked yet.
        alive = [k for k, s in status.items() if s not in KILLED and k not in equivalents]
        counted = len(codes) - len(equivalent)
        killed = counted - len(alive)
        # A timeout counts as a kill (the mutant hung a test), but on a loaded machine a slow
        # test can time out too: the column shows how much of the score rests on them.
        timeouts = sum(1 for s in status.values() if s == "timeout")
        total_killed += killed
        total_counted += counted
        total_equivalent += len(equivalent)
        score = 100.0 * killed / counted if counted else 100.0
        rows.append(
            f"| `{module}` | {len(codes)} | {killed} | {timeouts} | {len(equivalent)} | "
            f"{len(alive)} | {score:.1f}% |"
        )
        survivors += [f"{k} ({status[k]})" for k in alive]
    score = 100.0 * total_killed / total_counted if total_counted else 100.0
    print("| module | mutants | killed | of which timeouts | equivalent | alive | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"| **all** | | {total_killed} | | {total_equivalent} | | **{score:.1f}%** |")
    if survivors:
        print("\nSurvivors:\n")
        for entry in survivors:
            name = entry.split(" ")[0]
            shown = subprocess.run(
                ["mutmut", "show", name], cwd=where, capture_output=True, text=True, check=False
            ).stdout
            print(f"### {entry}\n```diff\n{shown.strip()}\n```")
    return 0 if score >= 90.0 else 1


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    if command == "stage":
        stage(target, sys.argv[3:])
    elif command == "report":
        sys.exit(report(target))
    else:
        sys.exit(f"unknown command {command!r}: use stage or report")
