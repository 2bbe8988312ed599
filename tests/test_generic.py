"""The generic operation: templates, typing, encoding, and loading operations by name."""

from __future__ import annotations

import json

import pytest

from async_updater.errors import ConfigError, InputError, RowError
from async_updater.generic import GenericOperation, load_operation
from async_updater.model import RowRecord
from async_updater.operation import ChimeUpdateUserSettings


def op(**kw: object) -> GenericOperation:
    base: dict[str, object] = {
        "service": "execute-api",
        "path_template": "/v1/orgs/{account_id}/users/{user_id}/flags",
        "method": "PATCH",
        "body_template": {
            "enabled": "{enabled:bool}",
            "limit": "{limit:int}",
            "note": "set by {owner} for {user_id}",
            "tags": ["fixed", "{tag}"],
            "extra": "{extra:json}",
        },
    }
    base.update(kw)
    return GenericOperation(**base)  # type: ignore[arg-type]


HEADER = ["account_id", "user_id", "enabled", "limit", "owner", "tag", "extra"]


def test_row_becomes_a_typed_body_and_an_encoded_path() -> None:
    o = op()
    parse = o.row_parser(HEADER)
    record = parse(["org 1", "a/b", "yes", " 42 ", "ops", "t1", '{"x": [1, null]}'], 7)
    assert isinstance(record, RowRecord)
    assert (record.account_id, record.user_id, record.line) == ("org 1", "a/b", 7)
    req = o.build(record)
    assert (req.method, req.path) == ("PATCH", "/v1/orgs/org%201/users/a%2Fb/flags")
    assert json.loads(req.body) == {
        "enabled": True,
        "limit": 42,
        "note": "set by ops for a/b",
        "tags": ["fixed", "t1"],
        "extra": {"x": [1, None]},
    }


@pytest.mark.parametrize(
    ("cells", "field", "reason"),
    [
        (["o", "u", "maybe", "1", "x", "t", "1"], "enabled", "not a boolean"),
        (["o", "u", "true", "1.5", "x", "t", "1"], "limit", "not a valid int"),
        (["o", "u", "true", "1", "x", "t", "{oops"], "extra", "not a valid json"),
        (["o", "", "true", "1", "x", "t", "1"], "user_id", "is empty"),
        (["o", "u", "true"], "", "has 3 fields"),
    ],
)
def test_bad_cells_are_row_errors_naming_the_field(
    cells: list[str], field: str, reason: str
) -> None:
    parse = op().row_parser(HEADER)
    with pytest.raises(RowError) as info:
        parse(cells, 3)
    assert info.value.field == field and reason in info.value.reason


def test_header_missing_a_template_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match="missing enabled"):
        op().row_parser(["account_id", "user_id", "limit", "owner", "tag", "extra"])


def test_extra_csv_columns_are_allowed() -> None:
    parse = op(body_template=None).row_parser(["user_id", "account_id", "comment"])
    record = parse(["u", "a", "whatever"], 2)
    assert op(body_template=None).build(record).body == b""


def test_without_an_account_column_the_scope_is_empty() -> None:
    o = op(path_template="/items/{item}", body_template=None, scope_column="account_id")
    record = o.row_parser(["item"])(["i-1"], 2)
    assert (record.account_id, record.user_id) == ("", "i-1")


@pytest.mark.parametrize(
    ("kw", "option"),
    [
        ({"method": "GET"}, "--method"),
        ({"service": "Not A Service"}, "--service"),
        ({"path_template": "v1/{x}"}, "--path-template"),
        ({"path_template": "/v1/static"}, "--path-template"),
        ({"path_template": "/v1/{x:int}"}, "--path-template"),
        ({"path_template": "/v1/{x}?op=logout"}, "--path-template"),
        ({"body_template": {"a": "{x:date}"}}, "--body-template"),
        ({"body_template": {"a": "{x:int}", "b": "{x:bool}"}}, "--body-template"),
    ],
)
def test_bad_templates_are_config_errors_naming_the_option(
    kw: dict[str, object], option: str
) -> None:
    with pytest.raises(ConfigError, match=option):
        op(**kw)


def test_different_templates_have_different_names_for_resume_checks() -> None:
    assert op().name != op(body_template={"enabled": "{enabled:bool}"}).name
    assert op().name == op().name


def test_load_operation_knows_the_builtin_chime_operation_and_refuses_unknown_names() -> None:
    assert isinstance(load_operation(""), ChimeUpdateUserSettings)
    assert isinstance(load_operation("chime-update-user-settings"), ChimeUpdateUserSettings)
    with pytest.raises(ConfigError, match="not registered"):
        load_operation("no-such-operation")


class ThirdPartyOperation(ChimeUpdateUserSettings):
    """Stands in for an operation a plugin package registers."""

    name = "third-party"


def _registered(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from importlib.metadata import EntryPoint

    import async_updater.generic as generic

    group = generic.ENTRY_POINT_GROUP
    plugin = EntryPoint(name="third-party", value=value, group=group)
    monkeypatch.setattr(generic, "entry_points", lambda group: [plugin] if group else [])


def test_an_operation_registered_through_the_entry_point_group_is_loaded_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _registered(monkeypatch, "tests.test_generic:ThirdPartyOperation")
    assert isinstance(load_operation("third-party"), ThirdPartyOperation)
    with pytest.raises(ConfigError, match="known: chime-update-user-settings, third-party"):
        load_operation("fourth-party")


def test_an_entry_point_that_cannot_be_imported_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _registered(monkeypatch, "no_such_plugin_module:Operation")
    with pytest.raises(ConfigError, match=r"--operation: 'third-party' could not be loaded"):
        load_operation("third-party")
