"""The bad-input corpus: every malformed file ends in the expected ZooError, at the right line.

Each file in ``bad_inputs/`` opens with ``# expect: ErrorClass[ line N]: text``; the line is N, or
the line carrying a ``# <-`` marker, or 1. Files that cannot carry a header (empty, not UTF-8)
are listed in ``NO_HEADER``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo._check_file import validate_file

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
FILES = sorted(CORPUS.glob("*.yaml"))
NO_HEADER = {
    "arch_empty.yaml": ("SchemaError", 1, "file is empty"),
    "arch_utf16.yaml": ("SchemaError", 1, "not valid UTF-8"),
}
HEADER = re.compile(rb"# expect: (\w+)(?: line (\d+))?: (.*)")


def _expectation(path: Path) -> tuple[str, int, str]:
    if path.name in NO_HEADER:
        return NO_HEADER[path.name]
    lines = path.read_bytes().split(b"\n")
    match = HEADER.match(lines[0])
    assert match, f"{path.name}: first line must be '# expect: ErrorClass: text'"
    marker = next((i + 1 for i, line in enumerate(lines) if b"# <-" in line), 1)
    line = int(match.group(2)) if match.group(2) else marker
    return match.group(1).decode(), line, match.group(3).decode()


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 250
    assert sum(p.name.startswith("recipe_") for p in FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_input_gives_the_expected_error(path: Path) -> None:
    kind, line, text = _expectation(path)
    errors = validate_file(path)
    assert errors, f"{path.name} validated without error"
    first = errors[0]
    assert isinstance(first, getattr(zoo, kind)), f"{type(first).__name__}: {first}"
    assert first.line == line, str(first)
    assert text in str(first)
    assert str(first).startswith(f"{first.file}:{first.line}:{first.column}: ")
    _in_the_zoos_words(errors)


PYDANTIC_WORDING = ("should be a valid", "should be", "constrained-", "after validation", "pattern", "input should",
                    "literal[", "tuple[", "value error", "type=", "pydantic", "_type", "union")


def _in_the_zoos_words(errors: list[zoo.ZooError]) -> None:
    """No pydantic internals ('should be a valid integer', 'constrained-int', '^add$'); hints punctuated."""
    for err in errors:
        text = str(err).split(": ", 1)[1].lower()  # the file name may contain anything
        assert not [w for w in PYDANTIC_WORDING if w in text], str(err)
        assert "^" not in text and "$'" not in text, str(err)
        if err.hint:
            assert str(err).rstrip().endswith((".", "?", "!", ")")), str(err)


def test_zoo_validate_prints_every_error_of_a_file(tmp_path: Path) -> None:
    bad = tmp_path / "several.yaml"
    bad.write_text(
        "name: several\ndescription: d\nsource: s\ninput: [1, 28, 28]\npublished: {params: 0, source: s}\n"
        "layers:\n  - convv: {filters: 4, kernel: 3}\n  - conv: {filters: 4, kernal: 3}\n  - flaten\n"
    )
    good = Path(zoo.get_spec("mnist_cnn_v1").file)
    out = subprocess.run([sys.executable, "-m", "zoo", "validate", str(good), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert lines[0] == f"{good}: ok"
    assert [ln.split(": ", 1)[0] for ln in lines[1:]] == [f"{bad}:7:5", f"{bad}:8:24", f"{bad}:9:5"]
    assert "did you mean 'conv'" in lines[1] and "did you mean 'kernel'" in lines[2] and "did you mean 'flatten'" in lines[3]


def test_every_shipped_file_validates() -> None:
    shipped = sorted(Path(zoo.get_spec("mnist_cnn_v1").file).parent.parent.rglob("*.yaml"))
    recipes = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
    for path in [*shipped, *recipes]:
        assert validate_file(path) == [], path


FIVE_MISTAKES = """\
name: five_mistakes
description: d
source: s
input: [1, 28, 28]
published: {params: 0, source: s}
cnofig: 1
layers:
  - cnov: {filters: 8, kernel: 3}
  - conv: {filtres: 8, kernel: 3}
  - conv: {filters: many, kernel: 3}
  - dense: {units: 10, act: rleu}
  - flatten
"""


def test_five_independent_mistakes_give_five_errors_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "five.yaml").write_text(FIVE_MISTAKES)
    out = subprocess.run([sys.executable, "-m", "zoo", "validate", "five.yaml"], capture_output=True, text=True, cwd=tmp_path)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 5, out.stdout + out.stderr
    assert [ln.split(": ", 1)[0] for ln in lines] == ["five.yaml:6:1", "five.yaml:8:5", "five.yaml:9:12", "five.yaml:10:12", "five.yaml:11:24"]
    assert "'cnofig'" in lines[0] and "did you mean 'conv'?" in lines[1] and "did you mean 'filters'?" in lines[2]
    assert "expected an integer > 0, got 'many'" in lines[3] and "got 'rleu'; did you mean 'relu'?" in lines[4]


def test_every_missing_key_and_every_bad_argument_inside_blocks_at_once(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: m\nlayers:\n  - residual:\n      body: [{conv: {filters: 8, kernel: 3, stride: '${s}'}}, {maxpol: 2}]\n"
        "  - concat: {branches: [[relu], [{dense: {units: -1}}]]}\n  - bottleneck: {plains: 4}\n"
    )
    errors = validate_file(path)
    assert [(e.path, e.line) for e in errors] == [
        ("layers[0].residual.body[1]", 4), ("layers[1].concat.branches[1][0].dense.units", 5),
        ("layers[2].bottleneck.plains", 6),
        ("published", 1), ("description", 1), ("source", 1), ("input", 1),  # the file's own, last
    ], [str(e) for e in errors]


def test_paths_are_reported_as_given(tmp_path: Path) -> None:
    """Errors found while building (shapes, inside blocks) name the file as the user did."""
    name = "arch_error_inside_block_names_call_site.yaml"
    out = subprocess.run([sys.executable, "-m", "zoo", "validate", name], capture_output=True, text=True, cwd=CORPUS)
    assert out.stdout.startswith(f"{name}:") and str(CORPUS) not in out.stdout, out.stdout
