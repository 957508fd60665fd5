"""Interpolation of env values and workdirs: the forms, the errors, and no value ever echoed."""

from __future__ import annotations

import pytest

from swarm_launch.interpolate import InterpolationError, interpolate

ENV = {"USER_NAME": "ada", "EMPTY": "", "SECRET": "s3cr3t-value"}


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("plain", "plain", id="no-reference"),
    pytest.param("${USER_NAME}", "ada", id="braced"),
    pytest.param("/home/${USER_NAME}/w", "/home/ada/w", id="embedded"),
    pytest.param("${EMPTY}", "", id="set-but-empty"),
    pytest.param("${MISSING:-fallback}", "fallback", id="default-when-unset"),
    pytest.param("${EMPTY:-fallback}", "fallback", id="default-when-empty"),
    pytest.param("${USER_NAME:-fallback}", "ada", id="default-unused"),
    pytest.param("${MISSING:-}", "", id="empty-default"),
    pytest.param("${MISSING:-$USER_NAME}", "$USER_NAME", id="default-is-literal"),
    pytest.param("${USER_NAME:?needed}", "ada", id="required-and-set"),
    pytest.param("$$", "$", id="escaped-dollar"),
    pytest.param("$${USER_NAME}", "${USER_NAME}", id="escaped-reference"),
    pytest.param("cost: 5$", "cost: 5$", id="trailing-dollar"),
    pytest.param("a $ b", "a $ b", id="dollar-before-space"),
    pytest.param("$1", "$1", id="dollar-before-digit"),
])
def test_interpolation_forms(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("${MISSING}", "${MISSING} is not set in the environment "
                 "(export it before running swarm-launch)", id="unset"),
    pytest.param("${MISSING:?ask the admin}", "${MISSING} is not set in the environment: "
                 "ask the admin", id="required-with-message"),
    pytest.param("${EMPTY:?}", "${EMPTY} is empty: export it before running swarm-launch",
                 id="required-but-empty"),
    pytest.param("$USER_NAME", "$USER_NAME is not interpolated: write ${USER_NAME} to use the "
                 "environment, or $$USER_NAME for a literal $", id="bare-variable"),
    pytest.param("${USER_NAME", "'${USER_NAME' is not a valid reference; use ${VAR}, "
                 "${VAR:-default} or ${VAR:?message} (write $$ for a literal $)", id="unclosed"),
    pytest.param("${9LIVES}", "'${9LIVES}' is not a valid reference", id="bad-name"),
    pytest.param("${A:=b}", "'${A:=b}' is not a valid reference", id="unsupported-operator"),
    pytest.param("${USER_NAME:-${MISSING}}", "references do not nest: the default of "
                 "${USER_NAME} holds '${'; write a literal default", id="nested-default"),
    pytest.param("${MISSING:-${USER_NAME}", "references do not nest", id="nested-unclosed"),
    pytest.param("${MISSING:?see ${DOC}}", "references do not nest: the message of ${MISSING}",
                 id="nested-message"),
])
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate(text, ENV)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("text", ["${SECRET}${MISSING}", "${SECRET} $SECRET", "${SECRET:?x}$X"])
def test_errors_never_contain_a_value(text: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate(text, ENV)
    assert "s3cr3t" not in str(caught.value)
