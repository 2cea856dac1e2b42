"""Development sessions: ``nox -s tests`` (default set: lint, typecheck, tests), ``nox -s bench``.

Every session installs what it needs into its own virtualenv, so a fresh machine needs only
Python, a Rust toolchain and ``pip install nox``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")


def install_project(session: nox.Session, *groups: str) -> None:
    """Build the extension in release mode and install it with the given dependency groups."""
    deps = list(PYPROJECT["project"]["dependencies"])
    deps += [d for g in groups for d in nox.project.dependency_groups(PYPROJECT, g)]
    if deps:
        session.install(*deps)
    session.install("maturin>=1.9.4,<2.0")
    # Build a wheel with maturin directly (cargo's incremental cache in ./target is reused
    # between runs) and install it, replacing any earlier build.
    out = Path(session.create_tmp()) / "wheels"
    session.run("maturin", "build", "--release", "--out", str(out), "--quiet")
    wheels = sorted(out.glob("swarm_actors-*.whl"), key=os.path.getmtime)
    session.install("--force-reinstall", "--no-deps", str(wheels[-1]))


@nox.session
def tests(session: nox.Session) -> None:
    """Rust unit and property tests, then the Python suite against a release build."""
    session.run("cargo", "test", "--workspace", "--locked", external=True)
    install_project(session, "test")
    env = {"HYPOTHESIS_PROFILE": "ci"} if os.environ.get("CI") else {}
    # The tests' temporary directories outside the checkout: nox points TMPDIR into .nox/,
    # and a project the tests build there sits inside this repository (git sees it as part of
    # it, ruff skips it as .gitignored, pytest picks up this repository's configuration).
    outside = tempfile.mkdtemp(prefix="swarm-actors-tests-")
    try:
        session.run("pytest", *session.posargs, env={**env, "TMPDIR": outside})
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (check + format), rustfmt and clippy with warnings denied."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", "python", "tests", "bench", "dev", "noxfile.py")
    session.run("ruff", "format", "--check", "python", "tests", "bench", "dev", "noxfile.py")
    session.run("cargo", "fmt", "--all", "--", "--check", external=True)
    session.run(
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
        external=True,
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and tests, and stubtest of the extension against its stub."""
    install_project(session, "typecheck")
    session.run("mypy")
    session.run(
        "python",
        "-m",
        "mypy.stubtest",
        "swarm_actors._tuplecore",
        "--allowlist",
        str(ROOT / "python" / "stubtest-allowlist.txt"),
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks, side by side with the baselines; writes bench/out/*.md. Opt-in (slow)."""
    session.run("cargo", "bench", "--workspace", "--locked", external=True)
    install_project(session, "bench")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the engine and the NATS layer's decision code. Opt-in.

    ``dev/mutation.py`` lists the modules and their tests; the score and every survivor go to
    ``bench/out/mutation.md`` (record the score in bench/RESULTS.md).
    """
    install_project(session, "test")
    session.install("mutmut>=3.8,<4")
    stage = Path(session.create_tmp()).resolve() / "mutation"  # absolute: the session chdirs
    # nox -s mutation -- _core/_cell.py _core/_ref.py: only those modules (default: every target).
    session.run("python", str(ROOT / "dev" / "mutation.py"), "stage", str(stage), *session.posargs)
    session.chdir(stage)
    session.run("mutmut", "run", "--max-children", str(os.cpu_count() or 2))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "mutation.md").open("w") as report:
        session.run(
            "python", str(ROOT / "dev" / "mutation.py"), "report", str(stage), stdout=report
        )
    session.log(f"mutation score and survivors: {out / 'mutation.md'}")
