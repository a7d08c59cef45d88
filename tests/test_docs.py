"""Every snippet in docs/*.md runs, and prints what the page says it prints.

Conventions (docs/index.md repeats them for authors):

- ```` ```python ```` blocks are executed in document order, each with `exec` in a fresh
  module namespace. A block whose info string is `python no-run` is not executed (keep
  those for APIs shown only for contrast, e.g. the pre-0.19 Bytewax API). A block whose
  info string is `python file=PATH` shows the file `docs/PATH` word for word (checked) and
  is written into the page's directory under its own name, for later commands to use.
- If the next fenced block after a python block has the info string `text output`, the
  python block's stdout must equal it, line by line (trailing spaces and blank lines
  ignored, timing-dependent fields removed: see `TIMING`).
- ```` ```console ```` and ```` ```bash ```` blocks of the pages in `SHELL_PAGES` are run with bash.
  In a console block every `$ ` line is a command (a trailing `\\` continues it) and the
  lines up to the next `$ ` are its output; a bash block is commands only. A command
  must exit 0 unless a trailing comment says `exit status N`. Where the page shows
  output, the command's combined stdout and stderr must equal it as a multiset of
  normalised lines: the order of lines is not compared, because alerts come from
  several worker threads. A command shown without output is run but its output is not
  compared.
- A command ending in `&` starts in the background (only its first output line is
  compared); `kill %N` stops the Nth one.

Each page runs in its own temporary directory holding a copy of the bundled sample at
`recordings/sample`, so pages can say `recordings/sample` and nothing lands in the repo.
`harness` is `python -m harness` of this interpreter. Nothing contacts Wikimedia: a
`harness record` or `harness live` command without `--url` is pointed at a local
`EventStreamServer` playing the sample, a `--duration` above 3 s is cut to 3 s, and the
port 8080 of a page's `harness serve` example is replaced by a free one.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.serve.server import EventStreamServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SAMPLE = ROOT / "recordings" / "sample"
PAGES = sorted(DOCS.glob("*.md"))
SHELL_PAGES = {"tutorial.md", "your-own-flow.md", "live-incident.md"}
DOC_PORT = "8080"
MAX_DURATION = 3
COMMAND_TIMEOUT = 120

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")
# Fields whose values depend on timing: removed before comparing.
TIMING = re.compile(r"\b(?:events/s|wall|bytes|compression|reconnects|duplicates)=\S+")
EXIT_STATUS = re.compile(r"#.*\bexit status (\d+)\s*$")
KILL_JOB = re.compile(r"^kill %(\d+)$")


@dataclass
class Block:
    info: str
    body: list[str]
    line: int  # 1-based line of the opening fence

    @property
    def words(self) -> list[str]:
        return self.info.split()

    @property
    def lang(self) -> str:
        return self.words[0] if self.words else ""

    def where(self, page: str) -> str:
        return f"{page}:{self.line}"


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order (indented fences included)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append(Block(m["info"].strip(), body, start))
        i += 1
    return blocks


def normalise(text: str, port: str | None = None) -> list[str]:
    """Lines without timing fields, trailing blanks or a local port; blank lines dropped."""
    out = []
    for line in text.splitlines():
        if port is not None:
            line = line.replace(f"127.0.0.1:{port}", f"127.0.0.1:{DOC_PORT}")
        line = " ".join(TIMING.sub("", line).split())
        if line:
            out.append(line)
    return out


# ------------------------------------------------------------------ python blocks


def run_python(block: Block, page: str) -> str:
    """Execute one block as a fresh module; return what it printed."""
    module = types.ModuleType(f"docs_snippet_{page.removesuffix('.md')}_{block.line}")
    module.__file__ = f"<{block.where(page)}>"
    sys.modules[module.__name__] = module  # dataclasses and pickle look classes up here
    out = io.StringIO()
    try:
        code = compile("\n".join(block.body) + "\n", module.__file__, "exec")
        with contextlib.redirect_stdout(out):
            exec(code, module.__dict__)
    except BaseException as exc:  # Bytewax raises PanicException, a BaseException
        pytest.fail(f"{block.where(page)}: python block raised {exc!r}\n"
                    f"--- printed so far ---\n{out.getvalue()}")
    finally:
        sys.modules.pop(module.__name__, None)
    return out.getvalue()


def check_python_output(block: Block, expected: Block, printed: str, page: str) -> None:
    want, got = normalise("\n".join(expected.body)), normalise(printed)
    assert got == want, (f"{block.where(page)}: output differs from the text output block at"
                         f" line {expected.line}\n--- page ---\n" + "\n".join(want)
                         + "\n--- printed ---\n" + "\n".join(got))


# ------------------------------------------------------------------- shell blocks


@dataclass
class Command:
    text: str
    output: list[str]
    line: int

    @property
    def expected_status(self) -> int:
        m = EXIT_STATUS.search(self.text)
        return int(m.group(1)) if m else 0

    @property
    def shell(self) -> str:
        """The command without a trailing comment."""
        return re.sub(r"\s+#[^'\"]*$", "", self.text).strip()


def parse_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    console = block.lang == "console"
    pending: Command | None = None
    continuing = False
    for offset, raw in enumerate(block.body, start=1):
        if continuing and pending is not None:
            pending.text = pending.text[:-1].rstrip() + " " + raw.strip()
        elif console and raw.startswith("$ "):
            pending = Command(raw[2:].strip(), [], block.line + offset)
            commands.append(pending)
        elif console:
            if pending is None:
                if raw.strip():
                    raise AssertionError(f"line {block.line + offset}: output before any $ line")
                continue
            pending.output.append(raw)
            continue
        elif raw.strip() and not raw.lstrip().startswith("#"):
            pending = Command(raw.strip(), [], block.line + offset)
            commands.append(pending)
        else:
            continue
        continuing = pending.text.endswith("\\")
    return commands


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@dataclass
class Shell:
    """Runs a page's commands in its directory, with `harness` and the local servers."""

    cwd: Path
    bin_dir: Path
    stream_url: str
    port: str = field(default_factory=free_port)
    jobs: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), str(Path(sys.executable).parent),
                                       env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH"))
                                            if p)
        return env

    def rewrite(self, command: str) -> str:
        """Keep the page's command, but never towards Wikimedia and never for long."""
        if re.search(r"\bharness (?:record|live)\b", command) and "--url" not in command:
            command = re.sub(r"\bharness (record|live)\b",
                             lambda m: f"harness {m.group(1)} --url {self.stream_url}",
                             command, count=1)
        command = re.sub(r"--duration (\d+(?:\.\d+)?)",
                         lambda m: f"--duration {min(float(m.group(1)), MAX_DURATION):g}",
                         command)
        command = command.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{self.port}")
        command = command.replace(f"--port {DOC_PORT}", f"--port {self.port}")
        assert "wikimedia.org" not in command, f"would contact Wikimedia: {command}"
        return command

    def run(self, command: Command, page: str) -> None:
        where = f"{page}:{command.line}"
        text = command.shell
        kill = KILL_JOB.match(text)
        if kill:
            self.stop(int(kill.group(1)) - 1)
            return
        if text.endswith("&"):
            self.background(text[:-1].strip(), command, where)
            return
        done = subprocess.run(["bash", "-c", self.rewrite(text)], cwd=self.cwd, env=self.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        status = done.returncode if done.returncode >= 0 else 128 - done.returncode  # as $?
        assert status == command.expected_status, (
            f"{where}: `{command.text}` exited {status}, the page says"
            f" {command.expected_status}\n{done.stdout[-3000:]}")
        self.compare(command, done.stdout, where)

    def compare(self, command: Command, printed: str, where: str) -> None:
        want = sorted(normalise("\n".join(command.output)))
        if not want:  # the page shows no output (e.g. a live recording's counts)
            return
        got = sorted(normalise(printed, self.port))
        assert got == want, (f"{where}: `{command.text}` printed something else (lines sorted,"
                             " timing fields removed)\n--- page ---\n" + "\n".join(want)
                             + "\n--- printed ---\n" + "\n".join(got))

    def background(self, text: str, command: Command, where: str) -> None:
        job = subprocess.Popen(["bash", "-c", "exec " + self.rewrite(text)], cwd=self.cwd,
                               env=self.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                               start_new_session=True)
        self.jobs.append(job)
        if command.output:
            assert job.stdout is not None
            first = job.stdout.readline()  # blocks until the job says something (or exits)
            assert first, f"{where}: `{command.text}` printed nothing (exit {job.poll()})"
            self.compare(Command(command.text, command.output[:1], command.line), first, where)

    def stop(self, index: int) -> None:
        job = self.jobs[index]
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)  # the job's own process group, by its id
            try:
                job.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
        if job.stdout is not None:
            job.stdout.close()

    def close(self) -> None:
        for index in range(len(self.jobs)):
            self.stop(index)


# ------------------------------------------------------------------------- pages


@pytest.fixture(scope="module")
def stream_server() -> Iterator[EventStreamServer]:
    """A stand-in for stream.wikimedia.org: the bundled sample, as fast as possible."""
    server = EventStreamServer(SAMPLE, speed=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    shutil.copytree(SAMPLE, work / "recordings" / "sample")
    monkeypatch.chdir(work)
    return work


def harness_bin(directory: Path) -> Path:
    directory.mkdir()
    script = directory / "harness"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m harness "$@"\n')
    script.chmod(0o755)
    return directory


def write_file_block(block: Block, file: str, page: str) -> None:
    """A ```` ```python file=PATH ```` block shows a file of docs/ word for word; it is
    written into the page's directory (under its own name) for later commands."""
    source = DOCS / file
    assert source.is_file(), f"{block.where(page)}: {file} is not a file under docs/"
    body = "\n".join(block.body) + "\n"
    assert body == source.read_text(), f"{block.where(page)}: differs from docs/{file}"
    Path(source.name).write_text(body)


def run_page(text: str, page: str, shell: Shell | None) -> int:
    """Run every runnable block of a page in order; return how many ran."""
    blocks = parse_blocks(text)
    ran = 0
    for index, block in enumerate(blocks):
        file = next((w.removeprefix("file=") for w in block.words if w.startswith("file=")),
                    None)
        if block.lang == "python" and file is not None:
            write_file_block(block, file, page)
            ran += 1
        elif block.lang == "python" and "no-run" not in block.words:
            assert "wikimedia.org" not in "\n".join(block.body), block.where(page)
            printed = run_python(block, page)
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if following is not None and following.words == ["text", "output"]:
                check_python_output(block, following, printed, page)
            ran += 1
        elif block.lang in ("console", "bash") and shell is not None:
            for command in parse_commands(block):
                shell.run(command, page)
                ran += 1
    return ran


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_snippets_run(page: Path, page_dir: Path, tmp_path: Path,
                           stream_server: EventStreamServer) -> None:
    shell = None
    if page.name in SHELL_PAGES:
        shell = Shell(page_dir, harness_bin(tmp_path / "bin"), stream_server.url)
    try:
        run_page(page.read_text(), page.name, shell)
    finally:
        if shell is not None:
            shell.close()


def test_pages_exist() -> None:
    names = {p.name for p in PAGES}
    assert {"index.md", "concepts.md", "tutorial.md", "determinism.md", "benchmarking.md",
            "architecture.md"} <= names


LINK = re.compile(r"\]\((?!https?://)([^)#\s]*)(?:#([^)\s]*))?\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    for target, anchor in LINK.findall(page.read_text()):
        path = page.parent / target if target else page
        assert path.exists(), f"{page.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: no heading for {target}#{anchor}"


# ------------------------------------------------------- the checker checks things


BROKEN_PAGE = """
```python
print("hello")
```

```text output
goodbye
```
"""

FAILING_PAGE = """
```python
raise ValueError("broken snippet")
```
"""

NOT_RUN_PAGE = """
```python no-run
raise ValueError("never executed")
```
"""


def test_checker_fails_on_wrong_output_and_errors(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="output differs"):
        run_page(BROKEN_PAGE, "broken.md", None)
    with pytest.raises(pytest.fail.Exception, match="broken snippet"):
        run_page(FAILING_PAGE, "failing.md", None)
    assert run_page(NOT_RUN_PAGE, "skipped.md", None) == 0


def test_checker_fails_on_wrong_exit_status_and_output(tmp_path: Path) -> None:
    shell = Shell(tmp_path, harness_bin(tmp_path / "bin"), "http://127.0.0.1:9/v2/stream/x")
    with pytest.raises(AssertionError, match="exited 3, the page says 0"):
        run_page("```console\n$ exit 3\n```\n", "status.md", shell)
    run_page("```console\n$ exit 3  # exit status 3\n```\n", "status.md", shell)
    with pytest.raises(AssertionError, match="printed something else"):
        run_page("```console\n$ echo one\ntwo\n```\n", "out.md", shell)
    run_page("```console\n$ echo b; echo a wall=0.1s\na\nb\n```\n", "ok.md", shell)


def test_live_stream_commands_are_pointed_at_the_local_server(tmp_path: Path) -> None:
    shell = Shell(tmp_path, tmp_path, "http://127.0.0.1:1234/v2/stream/recentchange")
    got = shell.rewrite("harness record --out recordings/today --duration 600")
    assert got == ("harness record --url http://127.0.0.1:1234/v2/stream/recentchange"
                   " --out recordings/today --duration 3")
    assert shell.rewrite("harness live --url http://127.0.0.1:8080/v2/stream/recentchange") \
        == f"harness live --url http://127.0.0.1:{shell.port}/v2/stream/recentchange"
    with pytest.raises(AssertionError, match="would contact Wikimedia"):
        shell.rewrite("harness record --url https://stream.wikimedia.org/v2/stream/x")
