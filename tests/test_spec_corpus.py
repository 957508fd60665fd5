"""The malformed-spec corpus: each file exits 1 with located errors, never a traceback.

Each file under tests/specs/bad/ starts with `# first: LINE:COL: $.path: message`,
the exact first line `validate` must print after `FILE:`.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from tests.helpers import invoke

BAD = pathlib.Path(__file__).parent / "specs" / "bad"
CORPUS = sorted(BAD.glob("*.yaml"))
LOCATED = re.compile(
    r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): "
    r"\$(?:\.[A-Za-z0-9_-]+|\[\d+\]|\['[^']*'\])*: \S.*$"
)


@pytest.fixture(autouse=True)
def _unset_corpus_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWARM_TEST_UNSET_KEY", "SWARM_TEST_UNSET_TOKEN", "SWARM_TEST_UNSET_X",
                 "SWARM_TEST_UNSET_DIR", "HOME_DIR"):
        monkeypatch.delenv(name, raising=False)


def expected_first_line(path: pathlib.Path) -> str:
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("# first: "), f"{path.name} lacks its `# first:` header"
    return f"{path}:{header.removeprefix('# first: ')}"


def assert_located_failure(path: str, err: str) -> list[str]:
    lines = err.splitlines()
    assert "Traceback" not in err
    *issues, summary = lines
    assert issues, err
    for line in issues:
        match = LOCATED.match(line)
        assert match and match["file"] == path, line
    numbers = [int(LOCATED.match(line)["line"]) for line in issues]  # type: ignore[index]
    assert numbers == sorted(numbers)
    noun = "error" if len(issues) == 1 else "errors"
    assert summary == f"{len(issues)} {noun} in {path}; nothing was changed."
    return issues


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("spec", CORPUS, ids=[p.stem for p in CORPUS])
def test_malformed_spec_exits_1_with_located_errors(spec: pathlib.Path) -> None:
    result = invoke("validate", str(spec))
    assert result.code == 1
    assert result.out == ""
    issues = assert_located_failure(str(spec), result.err)
    assert issues[0] == expected_first_line(spec)


def write(path: pathlib.Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(("name", "data", "first"), [
    pytest.param("empty.yaml", b"", "1:1: $: the file is empty", id="empty-file"),
    pytest.param("blank.yaml", b"\n  \n\n", "1:1: $: the file is empty", id="whitespace-only"),
    pytest.param("nul.yaml", b"version: 1\nname: x\x00y\n", "2:8: $: the file is binary",
                 id="binary"),
    pytest.param("latin1.yaml", b"version: 1\nname: caf\xe9\n", "2:10: $: the file is not valid",
                 id="invalid-utf8"),
    pytest.param("ctrl.yaml", b"version: 1\nname: a\x07b\n", "2:8: $: the character '\\x07'",
                 id="control-character"),
])
def test_unreadable_content_is_located(tmp_path: pathlib.Path, name: str, data: bytes,
                                       first: str) -> None:
    path = write(tmp_path / name, data)
    result = invoke("validate", path)
    assert result.code == 1
    issues = assert_located_failure(path, result.err)
    assert issues[0].startswith(f"{path}:{first}")


def test_too_large_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "big.yaml", b"# padding\n" * 120_000)
    result = invoke("validate", path)
    assert result.code == 1
    assert assert_located_failure(path, result.err)[0].startswith(
        f"{path}:1:1: $: the file is larger than 1024 KiB")


def test_directory_is_refused(tmp_path: pathlib.Path) -> None:
    result = invoke("validate", str(tmp_path))
    assert result.code == 1
    assert "is a directory" in assert_located_failure(str(tmp_path), result.err)[0]


def test_missing_path_is_refused(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "nope.yaml")
    result = invoke("validate", path)
    assert result.code == 1
    first = assert_located_failure(path, result.err)[0]
    assert first == f"{path}:1:1: $: no such file; check the path"
