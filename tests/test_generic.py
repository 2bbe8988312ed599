"""The generic operation: templates, typing, encoding, and loading operations by name."""

from __future__ import annotations

import json

import pytest

from async_updater.errors import ConfigError, InputError, RowError
from async_updater.model import RowRecord
from async_updater.operations.chime import ChimeUpdateUserSettings
from async_updater.operations.generic import GenericOperation, load_operation


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

    import async_updater.operations.generic as generic

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


# -- reading a row's state -----------------------------------------------------------------------

READ_FIELDS = {
    "enabled": "/flags/enabled",
    "limit": "/flags/limit",
    "owner": "/meta/owner",
    "tag": "/tags/1",
    "extra": "/extra",
}


def reading(**kw: object) -> GenericOperation:
    base: dict[str, object] = {
        "read_path_template": "/v1/orgs/{account_id}/users/{user_id}",
        "read_fields": READ_FIELDS,
    }
    base.update(kw)
    return op(**base)


ANSWER = {
    "flags": {"enabled": False, "limit": 3},
    "meta": {"owner": "ops"},
    "tags": ["fixed", "t0"],
    "extra": {"x": [2]},
    "ignored": "anything",
}


def test_generic_read_is_a_get_on_the_read_template_with_the_same_encoding() -> None:
    o = reading()
    record = o.row_parser(HEADER)(["org 1", "a/b", "yes", "42", "ops", "t1", "null"], 2)
    assert o.reader is not None
    read = o.reader.request(record)
    assert (read.method, read.path, read.body) == ("GET", "/v1/orgs/org%201/users/a%2Fb", b"")


def test_generic_answer_maps_to_columns_through_json_pointers() -> None:
    o = reading()
    assert o.reader is not None
    state = o.reader.parse(json.dumps(ANSWER).encode())
    assert state == {"enabled": False, "limit": 3, "owner": "ops", "tag": "t0", "extra": {"x": [2]}}
    assert o.reader.fields == ("enabled", "limit", "owner", "tag", "extra")
    record = o.row_parser(HEADER)(["o", "u", "false", "3", "ops", "t0", '{"x": [2]}'], 2)
    assert o.reader.desired(record) == state


def test_json_pointer_escapes_and_array_indexes() -> None:
    from async_updater.operations.generic import parse_pointer, resolve_pointer

    doc = {"a/b": {"m~n": [10, 20]}, "": 1}
    assert resolve_pointer(doc, parse_pointer("/a~1b/m~0n/1")) == 20
    assert resolve_pointer(doc, parse_pointer("/")) == 1
    assert resolve_pointer(doc, parse_pointer("")) == doc
    missing = resolve_pointer(doc, parse_pointer("/a~1b/m~0n/01"))
    assert missing is resolve_pointer(doc, parse_pointer("/nope"))
    for bad in ("flags/enabled", "/a~2"):
        with pytest.raises(ConfigError, match="--read-field"):
            parse_pointer(bad)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"flags": {"limit": 3}}, "the answer has nothing at /flags/enabled (enabled)"),
        (
            {"flags": {"enabled": "no", "limit": 3}},
            '/flags/enabled (enabled) is "no", not a boolean',
        ),
        (
            {"flags": {"enabled": True, "limit": True}},
            "/flags/limit (limit) is true, not an integer",
        ),
        ({"meta": {"owner": 7}}, "/meta/owner (owner) is 7, not a string"),
        ({"tags": "fixed"}, "the answer has nothing at /tags/1 (tag)"),
    ],
)
def test_generic_answer_with_a_missing_or_mistyped_value_is_a_state_error(
    change: dict[str, object], says: str
) -> None:
    from async_updater.errors import StateError

    o = reading()
    assert o.reader is not None
    with pytest.raises(StateError) as info:
        o.reader.parse(json.dumps({**ANSWER, **change}).encode())
    assert str(info.value) == says


def test_generic_restore_row_rebuilds_an_input_row_from_the_ids_and_the_state() -> None:
    o = reading()
    assert o.reader is not None
    state = o.reader.parse(json.dumps(ANSWER).encode())
    columns = o.reader.restore_columns
    assert columns == ("account_id", "user_id", "enabled", "limit", "owner", "tag", "extra")
    cells = o.reader.restore_row("org 1", "a/b", state)
    record = o.row_parser(list(columns))(cells, 2)
    assert (record.account_id, record.user_id) == ("org 1", "a/b")
    assert o.reader.desired(record) == state


def test_generic_restore_adds_the_scope_column_when_the_templates_do_not_use_it() -> None:
    o = op(
        path_template="/v1/items/{item}",
        body_template={"on": "{on:bool}", "ratio": "{ratio:float}"},
        scope_column="team",
        read_path_template="/v1/items/{item}",
        read_fields={"on": "/on", "ratio": "/ratio"},
    )
    assert o.reader is not None
    assert o.reader.restore_columns == ("team", "item", "on", "ratio")
    cells = o.reader.restore_row("blue", "i-1", {"on": True, "ratio": 0.25})
    assert cells == ["blue", "i-1", "true", "0.25"]
    record = o.row_parser(list(o.reader.restore_columns))(cells, 2)
    assert (record.account_id, record.values) == (
        "blue",
        {"item": "i-1", "on": True, "ratio": 0.25},
    )


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"read_path_template": None}, "--read-field: only used with --read-path-template"),
        ({"read_path_template": "users/{user_id}"}, "--read-path-template: must start with '/'"),
        (
            {"read_path_template": "/v1/teams/{team}"},
            "--read-path-template: {team} is not a placeholder of --path-template",
        ),
        (
            {"read_fields": {**READ_FIELDS, "user_id": "/id"}},
            "--read-field: 'user_id' is the id or scope column",
        ),
        (
            {"read_fields": {**READ_FIELDS, "colour": "/c"}},
            "--read-field: 'colour' is not a column the templates use",
        ),
        (
            {"read_fields": {k: v for k, v in READ_FIELDS.items() if k not in ("tag", "limit")}},
            "--read-field: none for limit, tag: every column the write sets needs one",
        ),
        (
            {"read_fields": {**READ_FIELDS, "tag": "tags/1"}},
            "--read-field tag: 'tags/1' is not a JSON pointer",
        ),
    ],
)
def test_read_options_that_cannot_work_are_config_errors_naming_the_option(
    kw: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        reading(**kw)
    assert str(info.value).startswith(says)


def test_read_field_specs_are_column_equals_pointer() -> None:
    from async_updater.operations.generic import parse_read_fields

    assert parse_read_fields(["a=/x", " b = /y/0 "]) == {"a": "/x", "b": "/y/0"}
    for bad, says in (
        (["a"], "is not COLUMN="),
        (["=/x"], "is not COLUMN="),
        (["a=/x", "a=/y"], "twice"),
    ):
        with pytest.raises(ConfigError, match=says):
            parse_read_fields(bad)


def test_a_generic_operation_without_read_options_cannot_read() -> None:
    assert op().reader is None


class ReaderlessOperation:
    """A plugin written before operations could read: no ``reader`` attribute."""

    name = "third-party"
    service = "chime"
    columns = ("account_id", "user_id")
    id_column = "user_id"
    scope_column = "account_id"

    def row_parser(self, header: object) -> object:
        raise NotImplementedError

    def build(self, record: object) -> object:
        raise NotImplementedError

    def error_parser(self, status: int, headers: object, body: bytes) -> tuple[str, str]:
        raise NotImplementedError


class ColumnlessOperation:
    """A plugin that does not say which columns name a row's user and account, nor how to read
    an error answer."""

    name = "third-party"
    service = "chime"
    columns = ("account_id", "user_id")
    reader = None

    def row_parser(self, header: object) -> object:
        raise NotImplementedError

    def build(self, record: object) -> object:
        raise NotImplementedError


def test_a_plugin_without_id_and_scope_columns_or_error_parser_is_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _registered(monkeypatch, "tests.test_generic:ColumnlessOperation")
    with pytest.raises(ConfigError) as info:
        load_operation("third-party")
    assert str(info.value) == (
        "--operation: 'third-party' does not implement the Operation protocol: it has no "
        "id_column, scope_column, error_parser"
    )


def test_a_plugin_without_reader_is_a_config_error_saying_how_to_declare_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _registered(monkeypatch, "tests.test_generic:ReaderlessOperation")
    with pytest.raises(ConfigError) as info:
        load_operation("third-party")
    assert str(info.value) == (
        "--operation: 'third-party' does not implement the Operation protocol: it has no "
        "reader (an operation that cannot read declares reader = None)"
    )
