"""The README's tour is executed word for word, and its sample output must match."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import REPO, VENV_BIN

README = (REPO / "README.md").read_text()


def tour_script() -> str:
    block = README.split("<!-- tour:start -->", 1)[1].split("<!-- tour:end -->", 1)[0]
    return block.strip().removeprefix("```sh").removesuffix("```")


def sample_blocks() -> list[list[str]]:
    after = README.split("<!-- tour:end -->", 1)[1].split("## Where agents are found")[0]
    return [[line for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```text\n(.*?)```", after, re.S)]


def line_pattern(expected: str, tmp_path: Path) -> str:
    """A README sample line as a regex: /tmp/tmp.XXXX is the tour's home, … any text."""
    pattern = re.escape(expected).replace(re.escape("/tmp/tmp.XXXX"),
                                          re.escape(str(tmp_path)) + r"/tmp\.\w+")
    return pattern.replace(re.escape("…"), ".+")


def test_tour_runs_and_output_matches_readme(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    env.pop("DOTAGENT_ROOT", None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", tour_script()], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    blocks = sample_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        # Each sample block must appear as consecutive lines of the real output.
        pattern = r"^" + r"\n".join(line_pattern(line, tmp_path) for line in block) + r"$"
        assert re.search(pattern, out, re.M), f"README block not in the output:\n{block}"
    assert "hello from greeter (weekday-morning, dry run: false)" in out
    assert '"exit_code": 0' in out
    assert "doctor exited 1" in out


def test_readme_names_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
    assert "make test" in (REPO / ".ci/run").read_text()
