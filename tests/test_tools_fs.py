"""swarm_actors.tools.Workspace: confinement, atomic writes, and every change an event."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ready_process, until
from swarm_actors.errors import (
    FileConflictError,
    FileTooLargeError,
    InvalidArgumentError,
    JournalClosedError,
    NoSuchFileError,
    PathEscapeError,
    SpecialFileError,
    SubjectError,
    ToolError,
)
from swarm_actors.events import BlobStore, MemoryJournal, StateChange, verify_chain
from swarm_actors.tools import (
    FILE_CHANGE_TYPE,
    FILE_SYSTEM,
    FileChange,
    JournalRecorder,
    Workspace,
    decode_file_change,
)
from swarm_actors.tools._diff import unified_diff


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return tmp_path / "ws"


@pytest.fixture
def ws(root: Path, journal: MemoryJournal, blobs: BlobStore) -> Workspace:
    workspace = Workspace(root, journal=journal, blobs=blobs, inline_limit=1024)
    return workspace


def changes(journal: MemoryJournal) -> list[tuple[StateChange, FileChange]]:
    found = []
    for entry in journal.entries():
        payload = entry.event.payload
        assert isinstance(payload, StateChange)
        found.append((payload, decode_file_change(payload.data)))
    return found


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".swarm-tmp")]


# --- confinement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "..",
        "/etc/passwd",
        "/proc/self/environ",
    ],
)
@pytest.mark.asyncio
async def test_paths_that_leave_the_root_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(PathEscapeError) as info:
        await ws.read(path)
    assert info.value.path == path
    with pytest.raises(PathEscapeError):
        await ws.write(path, "x")
    assert (Path(ws.root).parent / "outside" / "secret.txt").read_text() == "secret\n"


@pytest.mark.asyncio
async def test_dot_dot_that_stays_inside_is_fine(ws: Workspace) -> None:
    await ws.write("a/b/c.txt", "x")
    assert await ws.read("a/b/../b/./c.txt") == b"x"
    assert await ws.read("a/../a/b/c.txt") == b"x"


@pytest.mark.asyncio
async def test_a_symlink_in_the_middle_that_points_outside_is_refused(
    ws: Workspace, root: Path
) -> None:
    (root / "src").mkdir()
    (root / "src" / "out").symlink_to(root.parent / "outside")  # absolute target
    (root / "src" / "up").symlink_to("../../outside")  # relative, climbing out
    for path in ("src/out/secret.txt", "src/up/secret.txt"):
        with pytest.raises(PathEscapeError):
            await ws.read(path)
        with pytest.raises(PathEscapeError):
            await ws.write(path, "pwned")
    assert (root.parent / "outside" / "secret.txt").read_text() == "secret\n"
    assert sorted(p.name for p in (root.parent / "outside").iterdir()) == ["secret.txt"]


@pytest.mark.asyncio
async def test_a_final_symlink_outside_is_refused_and_one_inside_is_followed(
    ws: Workspace, root: Path
) -> None:
    (root / "leak").symlink_to(root.parent / "outside" / "secret.txt")
    with pytest.raises(PathEscapeError):
        await ws.read("leak")
    with pytest.raises(PathEscapeError):
        await ws.write("leak", "pwned")
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside")
    (root / "alias").symlink_to("real")
    (root / "real" / "link.txt").symlink_to("../real/f.txt")
    assert await ws.read("alias/f.txt") == b"inside"
    assert await ws.read("alias/link.txt") == b"inside"
    # Deleting a link removes the link, even one pointing outside, never its target.
    await ws.delete("leak")
    assert not (root / "leak").is_symlink()
    assert (root.parent / "outside" / "secret.txt").exists()


@pytest.mark.asyncio
async def test_a_link_loop_is_a_tool_error_not_a_hang(ws: Workspace, root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(ToolError, match="too many levels"):
        await ws.read("a")


@pytest.mark.asyncio
async def test_proc_devices_and_fifos_are_refused(ws: Workspace, root: Path) -> None:
    (root / "p").symlink_to("/proc/self/environ")
    with pytest.raises(PathEscapeError):
        await ws.read("p")
    with pytest.raises(PathEscapeError):
        Workspace("/proc/self")
    with pytest.raises(PathEscapeError):
        Workspace("/dev")
    if await asyncio.to_thread(os.path.isdir, "/dev/shm"):  # a plain tmpfs, not devices
        Workspace("/dev/shm").close()
    os.mkfifo(root / "fifo")
    with pytest.raises(SpecialFileError):  # and does not block on the FIFO
        await ws.read("fifo")
    with pytest.raises(SpecialFileError):
        await ws.write("fifo", "x")
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pass  # no CAP_MKNOD here: the FIFO stood for it
    else:
        with pytest.raises(SpecialFileError):
            await ws.read("null")
        with pytest.raises(SpecialFileError):
            await ws.write("null", "x")
    with pytest.raises(SpecialFileError):
        await ws.read(".")


@pytest.mark.asyncio
async def test_a_mount_point_inside_is_not_crossed(root: Path) -> None:
    # A directory on another device than the root's is refused. Mounting needs privileges, so
    # the walk is given a root device that no directory has: every directory is then "another
    # file system".
    from swarm_actors.tools._confine import locate

    (root / "x").mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(PathEscapeError, match="mount point"), locate(fd, -1, "x/y"):
            pass
        with locate(fd, os.fstat(fd).st_dev, "x/y") as found:
            assert (found.relative, found.name) == ("x/y", "y")
    finally:
        os.close(fd)


@pytest.mark.asyncio
async def test_missing_files_and_directories(ws: Workspace, root: Path) -> None:
    with pytest.raises(NoSuchFileError):
        await ws.read("nope.txt")
    with pytest.raises(NoSuchFileError):
        await ws.read("no/dir.txt")
    with pytest.raises(NoSuchFileError):
        await ws.write("no/dir.txt", "x", make_parents=False)
    with pytest.raises(NoSuchFileError):
        await ws.delete("nope")
    assert not await ws.exists("nope")
    with pytest.raises(PathEscapeError):
        await ws.exists("../outside")
    with pytest.raises(NoSuchFileError):
        Workspace(root / "missing")


# --- atomic writes ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_write_interrupted_by_an_exception_leaves_the_old_file_and_no_temp(
    ws: Workspace, root: Path, journal: MemoryJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ws.write("f.txt", "old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        await ws.write("f.txt", "new content that never lands\n")
    monkeypatch.undo()
    assert (root / "f.txt").read_text() == "old\n"
    assert temporaries(root) == []
    assert len(journal.entries()) == 1  # only the write that happened


@pytest.mark.asyncio
async def test_a_write_interrupted_mid_stream_leaves_the_old_file(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ws.write("big.bin", b"A" * 10)
    real_write = os.write
    calls = 0

    def one_chunk_then_fail(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise KeyboardInterrupt  # not even an Exception: still cleaned up
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", one_chunk_then_fail)
    with pytest.raises(KeyboardInterrupt):
        ws._write("big.bin", b"B" * (3 << 20), True)  # the worker's function, in this thread
    monkeypatch.undo()
    assert (root / "big.bin").read_bytes() == b"A" * 10
    assert temporaries(root) == []


@pytest.mark.asyncio
async def test_writes_keep_the_mode_and_readers_see_whole_files(ws: Workspace, root: Path) -> None:
    await ws.write("run.sh", "#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    await ws.write("run.sh", "#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(os.stat(root / "run.sh").st_mode) == 0o755
    await ws.write("new.txt", "x")
    assert stat.S_IMODE(os.stat(root / "new.txt").st_mode) == 0o644

    # A reader racing with writers only ever sees one whole version.
    versions = {b"a" * 200_000, b"b" * 300_000}
    await ws.write("race.bin", b"a" * 200_000)
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = (root / "race.bin").read_bytes()
            assert data in versions
            seen.add(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            await ws.write("race.bin", b"b" * 300_000 if i % 2 == 0 else b"a" * 200_000)
    finally:
        stop.set()
        thread.join()
    assert temporaries(root) == []


@pytest.mark.asyncio
async def test_size_limits(root: Path) -> None:
    ws = Workspace(root, max_file_size=100)
    with pytest.raises(FileTooLargeError) as info:
        await ws.write("f", b"x" * 101)
    assert (info.value.size, info.value.limit) == (101, 100)
    assert not (root / "f").exists()
    (root / "g").write_bytes(b"y" * 101)
    with pytest.raises(FileTooLargeError):
        await ws.read("g")
    await ws.write("f", b"x" * 100)
    with pytest.raises(InvalidArgumentError):
        Workspace(root, max_file_size=-1)
    with pytest.raises(InvalidArgumentError):
        Workspace(root, journal=MemoryJournal(), recorder=JournalRecorder(MemoryJournal()))
    ws.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        await ws.read("f")


# --- events -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_text_write_is_an_event_with_a_diff_and_the_hashes(
    ws: Workspace, journal: MemoryJournal
) -> None:
    first = await ws.write("src/app.py", "a = 1\nb = 2\n")
    second = await ws.write("src/app.py", "a = 1\nb = 3\n")
    (c1, f1), (c2, f2) = changes(journal)
    assert (c1.target_type, c1.target_resource, c1.content_type) == (
        FILE_SYSTEM,
        "src/app.py",
        FILE_CHANGE_TYPE,
    )
    assert f1 == first
    assert f2 == second
    assert f1.op == "create"
    assert f1.before_sha256 == ""
    assert f1.after_sha256 == hashlib.sha256(b"a = 1\nb = 2\n").hexdigest()
    assert f2.op == "write"
    assert f2.before_sha256 == f1.after_sha256
    assert f2.after_sha256 == hashlib.sha256(b"a = 1\nb = 3\n").hexdigest()
    assert f2.diff == (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"
    )
    assert not f2.binary
    assert f2.before_blob == f2.after_blob == ""
    assert c1.is_reversible
    assert c2.is_reversible
    verify_chain([e.event for e in journal.entries()])  # chained as one agent's changes
    assert c2.prev_hash == c1.hash


@pytest.mark.asyncio
async def test_binary_and_large_contents_go_to_the_blob_store_once(
    ws: Workspace, journal: MemoryJournal, blobs: BlobStore
) -> None:
    image = bytes(range(256)) * 4
    await ws.write("logo.png", image)
    await ws.write("copy.png", image)
    big = "line\n" * 1000  # over the inline_limit of 1024
    await ws.write("big.txt", big)
    await ws.write("big.txt", big + "more\n")
    (c1, f1), (_, f2), (_, f3), (c4, f4) = changes(journal)
    assert f1.binary
    assert f1.diff == ""
    assert f1.after_blob == f2.after_blob == hashlib.sha256(image).hexdigest()
    assert blobs.get(f1.after_blob) == image
    assert len(c1.data) < 400  # the content is not inside the event
    assert not f3.binary
    assert f3.diff == ""
    assert blobs.get(f4.before_blob) == big.encode()
    assert blobs.get(f4.after_blob) == (big + "more\n").encode()
    assert c4.is_reversible


@pytest.mark.asyncio
async def test_without_blobs_a_binary_overwrite_is_not_reversible(
    root: Path, journal: MemoryJournal
) -> None:
    ws = Workspace(root, journal=journal)
    await ws.write("b.bin", b"\x00\x01")
    await ws.write("b.bin", b"\x00\x02")
    (c1, _), (c2, f2) = changes(journal)
    assert c1.is_reversible  # a creation is undone by deleting
    assert not c2.is_reversible
    assert f2.before_sha256 == hashlib.sha256(b"\x00\x01").hexdigest()


@pytest.mark.asyncio
async def test_move_and_delete_are_events(
    ws: Workspace, root: Path, journal: MemoryJournal
) -> None:
    await ws.write("a.txt", "hello\n")
    await ws.write("b.txt", "other\n")
    with pytest.raises(FileConflictError):
        await ws.move("a.txt", "b.txt")
    moved = await ws.move("a.txt", "sub/c.txt")
    assert (root / "sub" / "c.txt").read_text() == "hello\n"
    assert not (root / "a.txt").exists()
    assert (moved.op, moved.path, moved.to_path) == ("move", "a.txt", "sub/c.txt")
    assert moved.before_sha256 == moved.after_sha256 == hashlib.sha256(b"hello\n").hexdigest()
    deleted = await ws.delete("sub/c.txt")
    assert deleted.op == "delete"
    assert deleted.after_sha256 == ""
    assert deleted.diff.endswith("-hello\n")
    with pytest.raises(SpecialFileError):
        await ws.delete("sub")
    ops = [f.op for _, f in changes(journal)]
    assert ops == ["create", "create", "move", "delete"]
    assert [(e.name, e.kind) for e in await ws.list()] == [("b.txt", "file"), ("sub", "dir")]
    assert (await ws.list())[0].size == 6


@pytest.mark.asyncio
async def test_no_newline_at_end_is_marked_in_the_diff(ws: Workspace) -> None:
    change = await ws.write("n.txt", "no newline")
    assert change.diff.endswith("+no newline\n\\ No newline at end of file\n")


@pytest.mark.asyncio
async def test_a_cancelled_write_still_records_its_event(
    ws: Workspace, root: Path, journal: MemoryJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        started.set()
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    task = asyncio.ensure_future(ws.write("slow.txt", "done\n"))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await until(lambda: len(journal.entries()) == 1)
    monkeypatch.undo()
    assert (root / "slow.txt").read_text() == "done\n"
    assert changes(journal)[0][1].op == "create"


@pytest.mark.asyncio
async def test_durable_false_writes_atomically_without_fsync(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fsync(fd: int) -> None:
        raise AssertionError("fsync called")

    ws = Workspace(root, durable=False)
    monkeypatch.setattr(os, "fsync", no_fsync)
    await ws.write("a/f.txt", "one\n")
    await ws.write("a/f.txt", "two\n")
    await ws.move("a/f.txt", "g.txt")
    assert (root / "g.txt").read_text() == "two\n"
    await ws.delete("g.txt")
    assert temporaries(root) == []
    durable = Workspace(root)
    with pytest.raises(AssertionError, match="fsync called"):
        await durable.write("h.txt", "x")
    assert temporaries(root) == []
    assert not (root / "h.txt").exists()


_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_patch(old: list[str], diff: str) -> list[str]:
    """``old`` with a unified diff applied; fails on any context or removal that mismatches."""
    lines = diff.splitlines(keepends=True)
    out: list[str] = []
    pos, i = 0, 2
    while i < len(lines):
        match = _HUNK.match(lines[i])
        assert match is not None, lines[i]
        empty = match[2] is not None and int(match[2]) == 0
        start = int(match[1]) if empty else int(match[1]) - 1
        out += old[pos:start]
        pos = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            no_eol = i + 1 < len(lines) and lines[i + 1].startswith("\\ No newline")
            text = line[1:-1] if no_eol else line[1:]
            if line[0] in " -":
                assert old[pos] == text, (old[pos], text)
                pos += 1
            if line[0] in " +":
                out.append(text)
            i += 2 if no_eol else 1
    return out + old[pos:]


_LINES = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\n", "e", "\n"]), max_size=40)


@settings(max_examples=300)
@given(old=_LINES, new=_LINES, prefix=_LINES)
def test_the_trimmed_diff_applies_like_difflibs(
    old: list[str], new: list[str], prefix: list[str]
) -> None:
    # Lines without a newline only at the end, as in a real file.
    old = [*(x if x.endswith("\n") else x + "\n" for x in prefix + old[:-1]), *old[-1:]]
    new = [*(x if x.endswith("\n") else x + "\n" for x in prefix + new[:-1]), *new[-1:]]
    diff = unified_diff(old, new, "f")
    assert apply_patch(old, diff) == new
    if not any(line.startswith("@@") for line in diff.splitlines()):
        assert old == new


@pytest.mark.asyncio
async def test_a_refused_event_is_an_error_though_the_change_is_made(root: Path) -> None:
    journal = MemoryJournal()
    ws = Workspace(root, journal=journal)
    await journal.close()
    with pytest.raises(JournalClosedError):
        await ws.write("f.txt", "made\n")
    assert (root / "f.txt").read_text() == "made\n"
    with pytest.raises(SubjectError):
        Workspace(root, journal=MemoryJournal(), role="not a role")


@pytest.mark.asyncio
async def test_an_actor_uses_a_workspace_and_its_changes_join_the_system_journal(
    root: Path,
) -> None:
    from swarm_actors import Actor, ActorSystem

    class Coder(Actor, role="coder"):
        async def on_start(self) -> None:
            journal = self.system.journal
            assert journal is not None
            # The tools record as an agent of their own under the actor's path, so their
            # chain never interleaves with the actor's own record_change chain.
            recorder = JournalRecorder(journal, role=self.role, agent_id=f"{self.ref.path}/tools")
            self.ws = Workspace(root, recorder=recorder)

        async def on_receive(self, message: object) -> object:
            assert isinstance(message, str)
            change = await self.ws.write("out.txt", message)
            return change.after_sha256

        async def on_stop(self) -> None:
            self.ws.close()

    async with ActorSystem() as system:
        ref = await system.start(Coder, name="coder")
        digest = await ref.ask("hello\n")
        journal = system.journal
        assert isinstance(journal, MemoryJournal)
        entries = journal.entries("swarm.events.coder.state_change")
        assert [e.event.agent_id for e in entries] == ["/coder/tools"]
        assert decode_file_change(entries[0].event.payload.data).after_sha256 == digest  # type: ignore[union-attr]
    assert (root / "out.txt").read_text() == "hello\n"


_CRASHING_WRITER = """
import asyncio, os, sys, time
from swarm_actors.tools import Workspace

real_write = os.write
def write_then_hang(fd, data):
    written = real_write(fd, data)
    print("ready", flush=True)  # half of the new content is in the temporary file
    time.sleep(1000)
    return written

async def main():
    ws = Workspace(sys.argv[1])
    os.write = write_then_hang
    await ws.write("f.bin", b"N" * (3 << 20))

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_process_killed_mid_write_leaves_the_old_file_whole(root: Path) -> None:
    (root / "f.bin").write_bytes(b"old content\n")
    async with ready_process("-c", _CRASHING_WRITER, str(root)) as proc:
        proc.kill()  # SIGKILL: no cleanup runs
        await proc.wait()
    assert (root / "f.bin").read_bytes() == b"old content\n"
    # What a crash leaves is a temporary file, never a half-written target.
    (temp,) = temporaries(root)
    assert 0 < temp.stat().st_size < 3 << 20
    ws = Workspace(root)
    assert await ws.read("f.bin") == b"old content\n"
    assert [e.name for e in await ws.list()] == [temp.name, "f.bin"]
