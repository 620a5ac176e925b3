"""The code examples of README.md, CONTRIBUTING.md and docs/ run as they are written.

- Every ```python block runs. The blocks of a page run in page order, in one namespace, in a
  fresh folder holding ``best.pt`` (a small TSM + TCM checkpoint of three classes) and
  ``clip.mp4`` (a short video of a moving square).
- A ```bash block marked ``<!-- run -->`` on the line before it runs with ``bash -e`` in the
  same folder, in page order with the Python blocks, with this environment's ``tcm`` first on
  the PATH.
- Every other ```bash block is checked without running: each ``tcm`` command line (also after
  ``torchrun ... -m tcm.cli.main``) must parse with tcm's own argument parser, each ``make``
  target must exist, each ``python benchmarks/...`` script must exist and know the options
  given to it. So does every ``python benchmarks/...`` command quoted inline.
- A block marked ``<!-- not run: REASON -->`` is exempt; every exemption is listed in NOT_RUN,
  so that adding one shows in this file.

The examples run on the pure-PyTorch path of ``tcm.ops`` (the compiled kernels, tested against
it in ``tests/ops``, give the same results): no example waits for a kernel build.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import tcm
from tcm.ops import use_backend
from tcm.ops._extension import DISABLE_ENV
from video_files import write_moving_square

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda p: str(p.relative_to(ROOT)),
)

# (page, first line of the block): the blocks that need what a test cannot have.
NOT_RUN = {
    (
        "README.md",
        "tcm prepare sthv1 --annotations annotations/ --root data/sthv1/frames --out data/sthv1/lists",
    ): "needs Something-Something V1",
    (
        "README.md",
        "tcm test sthv1_tcm_tsm_r50_8f --checkpoint tcm_sthv1_8f.pt",
    ): "needs Something-Something V1 and the release checkpoint",
    (
        "docs/checkpoints.md",
        'predictor = tcm.Predictor("custom.pt", allow_modules=["my_package.nets"])',
    ): "needs a model on a module of one's own",
    (
        "docs/data.md",
        "tcm prepare sthv1 --annotations annotations/ --root data/sthv1/frames --out data/sthv1/lists",
    ): "needs the data sets' official files",
    (
        "docs/own_videos.md",
        "from tcm.runtime import ExportedModel",
    ): "needs an exported model.onnx (tests/recipes/test_own_videos.py exports one)",
    (
        "docs/models.md",
        'model = tcm.create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8,',
    ): "needs an ImageNet weights file",
    (
        "docs/training.md",
        "from tcm.engine import DataConfig, ModelConfig, ScheduleConfig, RunConfig, evaluate, train",
    ): "needs a data set of videos",
    (
        "docs/using_a_model.md",
        "tcm predict match.mp4 --checkpoint best.pt --window 2.0 --stride 0.5 --timeline match.png",
    ): "needs a long video and a camera",
}

FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(run|not run:\s*(.+?))\s*-->\s*$")
SHELL_SPLIT = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # "run", "not run", or None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((s.strip() for s in self.code.splitlines() if s.strip()), "")


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.group(1), opening.group(2)
        before = next((s for s in reversed(lines[:i]) if s.strip()), "")
        marked = MARKER.match(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(
            s[len(indent) :] if s.startswith(indent) else s for s in lines[i + 1 : end]
        )
        marker = None if not marked else ("run" if marked.group(1) == "run" else "not run")
        rel = str(path.relative_to(ROOT))
        blocks.append(Block(rel, i + 1, lang, code + "\n", marker))
        i = end + 1
    return blocks


def runs(block: Block) -> bool:
    """Python blocks run unless exempt; shell blocks only when marked to."""
    if block.lang == "python":
        return block.marker != "not run"
    return block.lang == "bash" and block.marker == "run"


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in read_blocks(page)]


def commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script: continuations joined, comments dropped, split at
    pipes, redirections and ``&&``; here-documents skipped."""
    out, heredoc = [], None
    for line in script.replace("\\\n", " ").splitlines():
        if heredoc:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        found = re.search(r"<<-?\s*'?(\w+)'?", line)
        if found:
            heredoc, line = found.group(1), line[: found.start()]
        tokens = shlex.split(line, comments=True)
        current: list[str] = []
        skip_next = False
        for token in tokens:
            if skip_next:
                skip_next = False
                continue
            if token in SHELL_SPLIT:
                if current:
                    out.append(current)
                current = []
                skip_next = token in {">", ">>", "<", "2>"}  # the file after a redirection
                continue
            current.append(token)
        if current:
            out.append(current)
    return out


def check_tcm_arguments(argv: list[str], where: str) -> None:
    from tcm.cli.main import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code:
            pytest.fail(f"{where}: `tcm {' '.join(argv)}` does not parse: {stderr.getvalue()}")


def check_benchmark(argv: list[str], where: str) -> None:
    script = ROOT / argv[0]
    assert script.is_file(), f"{where}: {argv[0]} does not exist"
    source = script.read_text(encoding="utf-8")
    for option in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert f'"{option}"' in source, f"{where}: {argv[0]} has no option {option}"


def check_command(argv: list[str], where: str) -> None:
    if argv[0] == "tcm":
        check_tcm_arguments(argv[1:], where)
    elif argv[0] == "torchrun" and "tcm.cli.main" in argv:
        check_tcm_arguments(argv[argv.index("tcm.cli.main") + 1 :], where)
    elif argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        for target in (a for a in argv[1:] if "=" not in a):
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), (
                f"{where}: no make target {target!r}"
            )
    elif argv[0].startswith("python") and len(argv) > 1 and argv[1].startswith("benchmarks/"):
        check_benchmark(argv[1:], where)


def test_every_exemption_is_listed():
    found = {
        (block.page, block.first_line)
        for block in all_blocks()
        if block.marker == "not run" and block.lang in {"python", "bash"}
    }
    assert found == set(NOT_RUN), (
        f"not listed in NOT_RUN: {sorted(found - set(NOT_RUN))}; "
        f"listed but not marked: {sorted(set(NOT_RUN) - found)}"
    )


def test_shell_commands_that_do_not_run_parse():
    checked = 0
    for block in all_blocks():
        if block.lang in {"bash", "sh", "shell"} and block.marker != "run":
            for argv in commands(block.code):
                check_command(argv, block.where)
                checked += 1
    assert checked > 20


def test_inline_benchmark_commands_name_real_scripts_and_options():
    span = re.compile(r"`(python benchmarks/[^`]+)`")
    found = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in span.finditer(text.replace("\n", " ")):
            check_benchmark(shlex.split(match.group(1))[1:], str(page.relative_to(ROOT)))
            found += 1
    assert found > 5


@pytest.fixture(scope="module")
def example_files(tmp_path_factory) -> Path:
    """``best.pt``: a small TSM + TCM (ResNet-10, 4 frames of 64x64, three classes);
    ``clip.mp4``: 16 frames of a square moving right."""
    from tcm.checkpoint import atomic_save, make_checkpoint

    folder = tmp_path_factory.mktemp("example_files")
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 7}
    model = tcm.create_model("tcm_tsm_resnet10", 3, 4, **kwargs).eval()
    data = {"num_segments": 4, "sampling": "segments", "resize": [72, 96], "input_size": 64}
    data |= {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name="tcm_tsm_resnet10",
        num_classes=3,
        num_segments=4,
        model_kwargs=kwargs,
        classes=["pushing", "pulling", "waving"],
        data=data,
    )
    atomic_save(checkpoint, folder / "best.pt")
    write_moving_square(folder / "clip.mp4")
    return folder


RUN_PAGES = [page for page in PAGES if any(runs(block) for block in read_blocks(page))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page, example_files, tmp_path, monkeypatch):
    for name in ("best.pt", "clip.mp4"):
        (tmp_path / name).symlink_to(example_files / name)
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env[DISABLE_ENV] = "1"
    namespace: dict = {"__name__": "__docs_example__"}
    for block in filter(runs, read_blocks(page)):
        if block.lang == "python":
            with use_backend("torch"), contextlib.redirect_stdout(io.StringIO()):
                exec(compile(block.code, block.where, "exec"), namespace)
        else:
            result = subprocess.run(
                ["bash", "-e", "-c", block.code], env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"{block.where}:\n{block.code}\n{result.stderr[-3000:]}"
