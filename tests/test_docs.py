"""Every code block of the documentation runs: the pages under docs/ and the README.

The ```python, ```bash and ```console blocks of each page run in the page's order, in one fresh
folder per page: python blocks in one namespace per page, in this process; bash blocks (and the
``$ `` lines of console blocks) through ``bash -e``, where ``odin-ood`` is ``python -m odin_ood``
of this checkout (``python`` and ``torchrun`` are this interpreter's too). The folder has
``../shared`` beside it, the repository's own when there is one, so ``../shared/data`` reads as in
the docs; a page that names it is skipped when it is absent. A served port (``localhost:8000``,
``--port 8000``) becomes a free one, so two runs on one machine do not meet.

A block that does not run by default says so on the line before it, and the count of such marks
per page is fixed below (``MARKED``), so none hides silently:

* ``<!-- not-run: REASON -->`` never runs (an install, hours of CPU, weights we do not have);
* ``<!-- docs-test: slow -->`` runs only with ``-m slow`` (``test_slow_blocks_run``);
* ``<!-- docs-test: libraries -->`` runs only with ``-m libraries``, in the venv where torchvision
  and timm import (``test_library_blocks_run``).

Other fences are data shown to the reader (json, text, ...), never code: a fence in another
language (``sh``, ``py``, none) fails the inventory test, so nothing escapes by its spelling.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RUN = {"python", "bash", "console"}
SHOWN = {"json", "text"}
MARKS = {"not-run", "docs-test"}
MODES = {"slow", "libraries"}
TIMEOUT = 300

# page -> how many of its blocks never run (each with its reason beside it in the page), run with
# -m slow only, or run with -m libraries only
MARKED = {
    # not-run: the install + whole test suite (.ci/run runs it); mkdocs serve
    "README.md": {"not-run": 2},
    # not-run: the same install; pip install '.[serve]'; the 5.5 GB libraries venv. slow: the tour,
    # which is the README's (test_the_slow_marked_walkthroughs_run_by_default_elsewhere)
    "docs/getting-started.md": {"not-run": 3, "slow": 4},
    # not-run: training at full length. slow: datasets --root, the Tiny ImageNet builds, one epoch
    "docs/guides/data-and-models.md": {"not-run": 1, "slow": 3},
    # not-run: downloading ImageNet weights; files that are not in the repository
    "docs/guides/library-models.md": {"not-run": 2, "libraries": 5},
    # slow: fit -> score -> serve of a .pt2, which tests/test_walkthrough.py runs by default
    "docs/guides/own-model.md": {"slow": 1},
    # not-run: the full suites (minutes to hours); the GPU script. slow: a one-minute smoke run
    "docs/guides/reproduce.md": {"not-run": 2, "slow": 1},
    # not-run: GPUs on two machines; a running Ray cluster. slow: torchrun, Ray's cluster start
    "docs/guides/scale-out.md": {"not-run": 2, "slow": 3},
    # not-run: the full CIFAR suites
    "docs/results/README.md": {"not-run": 1},
}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+|~~~+)(?P<lang>[^\s`]*)")
MARK = re.compile(r"^\s*<!--\s*(?P<kind>[\w-]+):\s*(?P<why>.*?)\s*-->\s*$")
PORT = re.compile(r"(?<=localhost:)8000\b|(?<=127\.0\.0\.1:)8000\b|(?<=--port )8000\b")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    mark: str | None = None  # "not-run", "slow", "libraries"
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)]


def page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a page, with the mark on the line before each (blank lines skipped)."""
    lines = (path.read_text() if text is None else text).splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, start = m["indent"], m["ticks"], i
        i += 1
        body = []
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}{re.escape(ticks)}\s*$", lines[i].rstrip()):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page_name(path)}:{start + 1}: fence never closed")
        i += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark, reason = None, ""
        if k >= 0 and (mm := MARK.match(lines[k])) and mm["kind"] in MARKS:
            mark, reason = (mm["kind"], mm["why"]) if mm["kind"] == "not-run" else (mm["why"], "")
        found.append(Block(page_name(path), start + 1, m["lang"], "\n".join(body) + "\n", mark, reason))
    return found


def dangling_marks(path: Path) -> list[int]:
    """Line numbers of marks that no fence follows (a mark must stand right before its block)."""
    lines = path.read_text().splitlines()
    bad = []
    for n, line in enumerate(lines):
        mm = MARK.match(line)
        if mm and mm["kind"] in MARKS:
            nxt = next((x for x in lines[n + 1 :] if x.strip()), "")
            if not FENCE.match(nxt):
                bad.append(n + 1)
    return bad


def console_commands(code: str) -> str:
    """The ``$ `` lines of a console block (with their ``\\`` continuations); output lines dropped."""
    out, going = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or going:
            out.append(line[2:] if line.startswith("$ ") and not going else line)
            going = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_folder(bin_dir: Path) -> None:
    """``odin-ood``, ``python``, ``python3`` and ``torchrun`` of this interpreter and checkout."""
    bin_dir.mkdir()
    tools = {"odin-ood": "-m odin_ood", "python": "", "python3": "", "torchrun": "-m torch.distributed.run"}
    for name, args in tools.items():
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {args} "$@"\n'.replace("  ", " "))
        (bin_dir / name).chmod(0o755)


class PageRun:
    """One page's folder, namespace and environment; blocks run in order, the first failure stops it."""

    def __init__(self, tmp_path: Path):
        self.work = tmp_path / "work"
        self.work.mkdir()
        if SHARED.is_dir():
            (tmp_path / "shared").symlink_to(SHARED)
        tool_folder(tmp_path / "bin")
        self.port = str(free_port())
        self.namespace: dict = {"__name__": "__docs__"}
        self.env = dict(
            os.environ,
            PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )

    def run(self, block: Block) -> None:
        if block.lang == "python":
            self.python(block)
        else:
            self.bash(block, console_commands(block.code) if block.lang == "console" else block.code)

    def python(self, block: Block) -> None:
        code = compile(PORT.sub(self.port, block.code), block.where, "exec")
        old, old_path = Path.cwd(), os.environ.get("PYTHONPATH")
        os.chdir(self.work)
        sys.path.insert(0, str(self.work))
        os.environ["PYTHONPATH"] = self.env[
            "PYTHONPATH"
        ]  # processes a block starts (Ray's workers) import this checkout
        try:
            exec(code, self.namespace)
        except Exception as exc:
            raise AssertionError(f"the python block at {block.where} failed: {exc!r}") from exc
        finally:
            sys.path.remove(str(self.work))
            os.chdir(old)
            if old_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_path

    def close(self) -> None:
        """Stop a Ray cluster a failed block left running in this process, and drop the modules a
        page imported from its folder (``my_models``), so no other page sees them."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(self.work)):
                del sys.modules[name]

    def bash(self, block: Block, script: str) -> None:
        log = self.work.parent / "bash.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-e", "-c", PORT.sub(self.port, script)],
                cwd=self.work,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                out.write(f"\n(timed out after {TIMEOUT} s)\n")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what the block left running (a server), by its group
                proc.wait()
        if proc.returncode != 0:
            raise AssertionError(
                f"the {block.lang} block at {block.where} exited {proc.returncode}:\n"
                f"{block.code}\n--- output (end) ---\n{log.read_text()[-3000:]}"
            )


def run_page(path: Path, tmp_path: Path, modes: set[str], text: str | None = None) -> int:
    """Run the page's blocks that are unmarked or marked with one of ``modes``; returns how many ran."""
    todo = [b for b in blocks(path, text) if b.lang in RUN and (b.mark is None or b.mark in modes)]
    if any("../shared/data" in b.code for b in todo) and not (SHARED / "data").is_dir():
        pytest.skip(f"{page_name(path)} reads ../shared/data, absent here")
    page = PageRun(tmp_path)
    try:
        for block in todo:
            page.run(block)
    finally:
        page.close()
    return len(todo)


def with_blocks(mode: str | None) -> list:
    return [
        pytest.param(p, id=page_name(p)) for p in pages() if any(b.lang in RUN and b.mark == mode for b in blocks(p))
    ]


def test_every_block_is_run_or_marked_with_a_reason():
    counts: dict[str, dict[str, int]] = {}
    for path in pages():
        name = page_name(path)
        assert not dangling_marks(path), f"{name}: a mark with no block right after it, line(s) {dangling_marks(path)}"
        for b in blocks(path):
            assert b.lang in RUN | SHOWN, (
                f"{b.where}: a fence in {b.lang or 'no language'!r}: use one of {sorted(RUN | SHOWN)}"
            )
            if b.mark == "not-run":
                assert len(b.reason) > 10, f"{b.where}: a not-run block must say why"
            elif b.mark is not None:
                assert b.mark in MODES, f"{b.where}: docs-test: {b.mark!r} is none of {sorted(MODES)}"
            if b.mark and b.lang in SHOWN:
                raise AssertionError(f"{b.where}: a {b.lang} block is never run, so it needs no mark")
            if b.mark:
                counts.setdefault(name, {}).setdefault(b.mark, 0)
                counts[name][b.mark] += 1
            if b.lang in RUN and b.mark != "not-run" and "odin-ood serve" in b.code:
                assert "--port 8000" in b.code, f"{b.where}: serve on --port 8000, which the test moves to a free port"
    assert counts == MARKED, "marked blocks changed: update MARKED (and say why, in the page and there)"


def odin_ood_lines(path: Path, after: str) -> list[str]:
    """The ``odin-ood`` command lines of the run blocks of a page's section (continuations joined)."""
    section = path.read_text().split(after, 1)[1].split("\n## ", 1)[0]
    lines = []
    for b in blocks(path, section):
        if b.lang == "bash":
            lines += [
                ln.split("#")[0].strip()
                for ln in b.code.replace("\\\n", " ").splitlines()
                if ln.startswith("odin-ood ")
            ]
    return [" ".join(ln.split()) for ln in lines]


def test_the_slow_marked_walkthroughs_run_by_default_elsewhere():
    """Two walk-throughs run with ``-m slow`` only, because the default suite runs the same commands
    elsewhere: Getting started's tour is the README's (run here by default), and Your own model's
    fit -> score -> serve is what tests/test_walkthrough.py runs, checking every row against the library."""
    tour = odin_ood_lines(ROOT / "README.md", "## A tour")
    assert tour == odin_ood_lines(ROOT / "docs" / "getting-started.md", "## A tour")
    assert [c.split()[1] for c in tour] == ["fit", "score", "serve"]
    first = [
        next(b.code for b in blocks(p, p.read_text().split("## A tour", 1)[1]) if b.lang == "bash").split("\nEOF\n")[0]
        for p in (ROOT / "README.md", ROOT / "docs" / "getting-started.md")
    ]
    assert first[0] == first[1] and "demo_sample()" in first[0]  # the same image folders
    own = ROOT / "docs" / "guides" / "own-model.md"
    assert [c.split()[1] for c in odin_ood_lines(own, "## Fit, score, serve")[:3]] == ["fit", "score", "serve"]
    assert (
        "PAGE = " in (ROOT / "tests" / "test_walkthrough.py").read_text()
        and "own-model.md" in (ROOT / "tests" / "test_walkthrough.py").read_text()
    )


def test_the_site_pages_are_all_found():
    names = {page_name(p) for p in pages()}
    assert {"README.md", "docs/getting-started.md", "docs/concepts/odin.md", "docs/guides/own-model.md"} <= names
    assert sum(b.lang in RUN and b.mark is None for p in pages() for b in blocks(p)) >= 30


@pytest.mark.parametrize("path", with_blocks(None))
def test_page_blocks_run(path, tmp_path, torch_one_thread):
    assert run_page(path, tmp_path, modes=set()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", with_blocks("slow"))
def test_slow_blocks_run(path, tmp_path):
    run_page(path, tmp_path, modes={"slow"})


@pytest.mark.libraries
@pytest.mark.parametrize("path", with_blocks("libraries"))
def test_library_blocks_run(path, tmp_path):
    run_page(path, tmp_path, modes={"libraries"})


PAGE = """# a page

```python
x = 2
```

<!-- not-run: a block that would fail, never run -->
```bash
exit 3
```

```python
assert x == 2, "one namespace per page"
```

```bash
odin-ood --version
{bad}
echo never reached
```
"""


@pytest.mark.parametrize("bad", ["false", "odin-ood no-such-command"])
def test_a_failing_bash_block_fails_its_page(tmp_path, bad):
    page = ROOT / "docs" / "a-page.md"
    with pytest.raises(AssertionError, match=r"the bash block at docs/a-page.md:16 exited [12]") as failed:
        run_page(page, tmp_path, set(), text=PAGE.format(bad=bad))
    output = str(failed.value).split("--- output (end) ---")[1]
    assert output.strip().startswith("odin-ood ")  # the lines before it ran (odin-ood --version)
    assert "never reached" not in output  # bash -e: nothing after the failing line


def test_a_failing_python_block_fails_its_page_and_a_passing_page_passes(tmp_path):
    page = ROOT / "docs" / "a-page.md"
    good = PAGE.format(bad="true")
    (tmp_path / "a").mkdir()
    assert run_page(page, tmp_path / "a", set(), text=good) == 3
    bad = good.replace("assert x == 2", "assert x == 3")
    (tmp_path / "b").mkdir()
    with pytest.raises(
        AssertionError, match=r"python block at docs/a-page.md:12 failed: AssertionError\('one namespace"
    ):
        run_page(page, tmp_path / "b", set(), text=bad)


def test_console_blocks_run_their_dollar_lines_only():
    code = "$ odin-ood fit --model m \\\n    --out det/\nwrote det/detector.json\n$ ls det\ndetector.json\n"
    assert console_commands(code) == "odin-ood fit --model m \\\n    --out det/\nls det\n"


def test_marks_are_read_from_the_line_before_the_fence():
    text = textwrap.dedent("""\
        <!-- docs-test: slow -->

        ```bash
        echo a
        ```
        * a list item:

          ```python
          y = 1
          ```
        """)
    got = blocks(ROOT / "docs" / "x.md", text)
    assert [(b.lang, b.mark, b.code) for b in got] == [("bash", "slow", "echo a\n"), ("python", None, "y = 1\n")]
