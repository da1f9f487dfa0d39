"""The models file: loading the sample, body validation, and every kind of bad file."""

from __future__ import annotations

import json

import pytest
import yaml
from jsonschema import Draft202012Validator
from support import SAMPLE_MODELS

from data_service.models import (
    RESERVED,
    ModelError,
    Models,
    ModelType,
    Property,
    ValidationFailed,
    Violation,
    is_reserved,
    load_models,
    parse_models,
)
from data_service.models.formats import FORMAT_CHECKER, utc_date_time
from data_service.protection import KINDS

SAMPLE = SAMPLE_MODELS

GOOD_USER = {
    "email": "ann@example.com",
    "name": "Ann",
    "password": "correct horse",
    "ssn": "123-45-6789",
    "country": "NO",
    "age": 42,
    "tags": ["a", "b"],
    "address": {"street": "Main St 1", "city": "Oslo", "zip": "0150"},
}


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(SAMPLE)


@pytest.fixture(scope="module")
def user(models) -> ModelType:
    return models.get("user")


def violations(model: ModelType, body: object) -> list[Violation]:
    with pytest.raises(ValidationFailed) as info:
        model.validate(body)
    return info.value.violations


def paths(model: ModelType, body: object) -> list[str]:
    return [v.path for v in violations(model, body)]


# --- the sample file


def test_sample_declares_three_types(models):
    assert [t.name for t in models] == ["user", "note", "event"]
    assert len(models) == 3
    assert models.get("nope") is None


def test_tag_and_version(models):
    event = models.get("event")
    assert (event.major, event.minor, event.version, event.tag) == (2, 1, "2.1", "event_v2.1")
    assert models.get("user").tag == "user_v1.0"


def test_user_properties_and_keywords(user):
    assert list(user.properties) == ["email", "name", "password", "ssn", "country", "age", "tags", "address"]
    assert user.required == ("email", "name")
    assert user.delete_policy == "soft"
    email, password = user.properties["email"], user.properties["password"]
    assert (email.protection, email.indexed, email.readable, email.bcrypt_cost) == ("sha3-512", True, False, None)
    assert email.schema == {"type": "string", "format": "email", "maxLength": 254}
    assert (password.protection, password.bcrypt_cost, password.readable) == ("bcrypt", 10, False)
    assert user.properties["ssn"].readable and user.properties["country"].readable
    assert user.properties["country"].protection == "encrypt-deterministic"
    assert user.properties["age"] == Property("age", {"type": "integer", "minimum": 0, "maximum": 150}, KINDS["plain"])


def test_note_and_event(models):
    note, event = models.get("note"), models.get("event")
    assert note.delete_policy == "hard" and note.required == ("title",)
    assert note.properties["attributes"].schema["additionalProperties"] == {"type": "string"}
    assert event.extras == {"indexes": [["owner", "created_at"], "kind"]}
    assert note.extras == {}
    assert [p.name for p in event.properties.values() if p.indexed] == ["owner", "created_at"]


def test_bcrypt_cost_defaults_to_12():
    model = parse_models(
        {"types": {"t": {"version": "0.3", "properties": {"pw": {"type": "string", "protection": "bcrypt"}}}}}
    )
    assert model.get("t").properties["pw"].bcrypt_cost == 12
    assert model.get("t").tag == "t_v0.3"


def test_sample_as_json_loads_the_same(tmp_path, models):
    path = tmp_path / "models.json"
    path.write_text(json.dumps(yaml.safe_load(SAMPLE.read_text())))
    assert load_models(path) == models


# --- schemas


def test_input_schema_rejects_unknown_property(user):
    schema = user.input_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    assert validator.is_valid(GOOD_USER)
    assert not validator.is_valid({**GOOD_USER, "nickname": "x"})
    assert not validator.is_valid({"name": "Ann"})  # email is required
    assert schema["required"] == ["email", "name"]
    assert "protection" not in schema["properties"]["email"]


def test_output_schema_hides_hashed_properties(user):
    schema = user.output_schema()
    Draft202012Validator.check_schema(schema)
    assert "password" not in schema["properties"] and "email" not in schema["properties"]
    assert schema["required"] == ["id", "meta", "name"]
    shown = {k: v for k, v in GOOD_USER.items() if k not in ("email", "password")}
    meta = {
        "type": "user",
        "version": "1.0",
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-02T10:00:00Z",
    }
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    assert validator.is_valid({"id": "u1", "meta": meta, **shown})
    assert validator.is_valid({"id": "u1", "meta": {**meta, "deleted_at": "2024-05-03T00:00:00Z"}, "name": "A"})
    assert not validator.is_valid({"id": "u1", "meta": meta, **shown, "password": "$2b$..."})
    assert not validator.is_valid({"id": "u1", "meta": {**meta, "created_at": "yesterday"}, "name": "A"})
    assert not validator.is_valid({"id": "u1", "name": "A"})


# --- validating bodies


def test_valid_body_passes(user, models):
    assert user.validate(GOOD_USER) is None
    assert user.validate({"email": "a@b.co", "name": "B"}) is None
    assert models.get("note").validate({"title": "t", "attributes": {"k": "v"}}) is None


def test_collects_all_violations_sorted_with_pointers(user):
    body = {**GOOD_USER, "age": -1, "tags": ["a", "b", "c", 4], "address": {"zip": 5}, "name": ""}
    found = violations(user, body)
    assert [v.path for v in found] == ["/address/zip", "/age", "/name", "/tags/3"]
    assert all(isinstance(v, Violation) for v in found)


def test_missing_required_and_nested_pointer_escaping(models):
    note = models.get("note")
    found = violations(note, {"attributes": {"a/b~c": 1}})
    assert [(v.path, v.message) for v in found] == [
        ("/attributes/a~1b~0c", "1 is not of type 'string'"),
        ("/title", "is required"),
    ]


def test_non_object_body(user):
    for body in ([], "x", None, 3):
        assert [(v.path, v.message) for v in violations(user, body)] == [("", "must be a JSON object")]


def test_unknown_and_reserved_names(user):
    found = violations(
        user, {**GOOD_USER, "nickname": "x", "id": "1", "type": "t", "meta": {}, "sig": "s", "_rev": "1-a"}
    )
    assert [(v.path, v.message) for v in found] == [
        ("/_rev", "reserved name"),
        ("/id", "reserved name"),
        ("/meta", "reserved name"),
        ("/nickname", "unknown property"),
        ("/sig", "reserved name"),
        ("/type", "reserved name"),
    ]


@pytest.mark.parametrize(
    "name, value",
    [
        ("name", "x" * 201),
        ("address", {"street": "s", "country": "NO"}),
    ],
)
def test_plain_violations(user, name, value):
    assert paths(user, {**GOOD_USER, name: value}) == [f"/{name}"]


@pytest.mark.parametrize(
    "model, name, value",
    [
        ("user", "email", "not-an-email"),
        ("user", "email", "ann@@example.com"),
        ("event", "created_at", "2024-13-01T00:00:00Z"),
        ("event", "created_at", "2024-05-01 10:00"),
        ("event", "created_at", "yesterday"),
    ],
)
def test_formats_are_checked(models, model, name, value):
    good = {"user": GOOD_USER, "event": {"owner": "o", "kind": "login", "created_at": "2024-05-01T10:00:00Z"}}
    body = good[model]
    models.get(model).validate(body)
    assert paths(models.get(model), {**body, name: value}) == [f"/{name}"]


@pytest.mark.parametrize(
    "fmt, good, bad",
    [
        ("email", "first.last+x@mail.example.org", "a b@example.com"),
        ("date-time", "2024-02-29T23:59:59.5+01:00", "2023-02-29T23:59:59Z"),
        ("date", "2024-02-29", "2023-02-29"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"),
        ("uri", "https://example.com/a?b=c#d", "not a uri"),
        ("uri", "urn:isbn:0451450523", "/relative/path"),
    ],
)
def test_format_checker(fmt, good, bad):
    assert FORMAT_CHECKER.conforms(good, fmt)
    assert not FORMAT_CHECKER.conforms(bad, fmt)
    assert FORMAT_CHECKER.conforms(12, fmt)  # formats only apply to strings


@pytest.mark.parametrize(
    "name, value",
    [
        ("email", "leaked-secret-value"),
        ("email", "leaked@secret..value"),
        ("password", "leak"),
        ("password", 12345678),
        ("ssn", "leak-999999999"),
        ("country", "XLEAK"),
    ],
)
def test_protected_violation_does_not_echo_the_value(user, name, value):
    [found] = violations(user, {**GOOD_USER, name: value})
    assert found.path == f"/{name}"
    assert str(value) not in found.message
    assert found.message


def test_plain_violation_may_echo_the_value(user):
    [found] = violations(user, {**GOOD_USER, "age": 999})
    assert "999" in found.message


def test_validation_failed_message_lists_paths(user):
    with pytest.raises(ValidationFailed, match="/age"):
        user.validate({**GOOD_USER, "age": "old"})


def test_validators_are_compiled_once(user):
    assert user._validators is user._validators


# --- reserved names


def test_reserved_names():
    assert frozenset({"id", "type", "meta", "sig"}) == RESERVED
    assert is_reserved("_id") and is_reserved("meta") and not is_reserved("email")


# --- bad models files


def user_type(**changes) -> dict:
    spec = {
        "version": "1.0",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email"},
            "pw": {"type": "string", "protection": "bcrypt"},
        },
    }
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return {"types": {"user": spec}}


def with_property(name: str, spec: dict) -> dict:
    data = user_type()
    data["types"]["user"]["properties"][name] = spec
    return data


BAD = {
    "bad protection": (
        with_property("email", {"type": "string", "protection": "sha256"}),
        ["type 'user'", "property 'email'", "protection 'sha256' is not one of", *KINDS],
    ),
    "bad version": (user_type(version="1"), ["type 'user'", "version '1'", "major.minor"]),
    "version with leading zero": (user_type(version="01.0"), ["type 'user'", "version '01.0'"]),
    "version as number": (user_type(version=1.0), ["type 'user'", "version must be a string", "number"]),
    "missing version": (user_type(version=None), ["type 'user'", "version is required"]),
    "bad type name": ({"types": {"User": user_type()["types"]["user"]}}, ["type name 'User'", "invalid"]),
    "reserved property name": (with_property("id", {"type": "string"}), ["type 'user'", "'id' is reserved"]),
    "underscore property name": (with_property("_rev", {"type": "string"}), ["type 'user'", "'_rev' is reserved"]),
    "bad property name": (
        with_property("Email", {"type": "string"}),
        ["type 'user'", "property name 'Email' is invalid"],
    ),
    "required undeclared": (
        user_type(required=["email", "nmae"]),
        ["type 'user'", "required names undeclared property 'nmae'"],
    ),
    "bcrypt_cost on plain": (
        with_property("name", {"type": "string", "bcrypt_cost": 10}),
        ["type 'user'", "property 'name'", "bcrypt_cost is only allowed with protection bcrypt"],
    ),
    "bcrypt_cost out of range": (
        with_property("pw", {"type": "string", "protection": "bcrypt", "bcrypt_cost": 9}),
        ["type 'user'", "property 'pw'", "bcrypt_cost", "minimum of 10"],
    ),
    "bcrypt_cost beyond 15": (
        with_property("pw", {"type": "string", "protection": "bcrypt", "bcrypt_cost": 31}),
        ["type 'user'", "property 'pw'", "bcrypt_cost", "maximum of 15"],
    ),
    "bcrypt on integer": (
        with_property("pin", {"type": "integer", "protection": "bcrypt"}),
        ["type 'user'", "property 'pin'", "protection 'bcrypt' needs type string", "integer"],
    ),
    "sha3 without type": (
        with_property("pin", {"protection": "sha3-512"}),
        ["property 'pin'", "protection 'sha3-512' needs type string"],
    ),
    "indexed bcrypt": (
        with_property("pw", {"type": "string", "protection": "bcrypt", "indexed": True}),
        ["property 'pw'", "cannot be indexed"],
    ),
    "indexed not a bool": (
        with_property("name", {"type": "string", "indexed": "yes"}),
        ["property 'name'", "indexed must be a boolean"],
    ),
    "invalid JSON Schema": (
        with_property("name", {"type": "strin"}),
        ["type 'user'", "property 'name'", "invalid JSON Schema", "/type", "strin"],
    ),
    "invalid nested JSON Schema": (
        with_property("name", {"type": "object", "properties": {"a": {"minLength": -1}}}),
        ["property 'name'", "invalid JSON Schema", "/properties/a/minLength"],
    ),
    "invalid regex": (
        with_property("name", {"type": "string", "pattern": "("}),
        ["property 'name'", "invalid JSON Schema", "/pattern"],
    ),
    "property not an object": (with_property("name", "string"), ["property 'name'", "must be an object"]),
    "unchecked format": (
        with_property("name", {"type": "string", "format": "phone"}),
        ["property 'name'", "format 'phone'", "not checked"],
    ),
    "$ref": (
        with_property("name", {"type": "array", "items": {"$ref": "#/x"}}),
        ["property 'name'", "$ref at /items", "self-contained"],
    ),
    "non-string enum value": (
        with_property("name", {"type": "string", "enum": ["a", 1]}),
        ["property 'name'", "enum value 1", "not a string"],
    ),
    "unknown top-level key": (user_type(colour="red"), ["type 'user'", "unknown key 'colour'"]),
    "bad delete policy": (user_type(delete="never"), ["type 'user'", "delete 'never' is not one of hard, soft"]),
    "indexes not a list": (user_type(indexes="owner"), ["type 'user'", "indexes must be an array"]),
    "empty types": ({"types": {}}, ["no types declared"]),
    "no types key": ({"kinds": {}}, ["types is required", "unknown key 'kinds'"]),
    "not a mapping": (["user"], ["must be an object", "array"]),
    "empty file": (None, ["no types declared"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_models_data(case):
    data, words = BAD[case]
    with pytest.raises(ModelError) as info:
        parse_models(data, "models.yaml")
    message = str(info.value)
    assert message.startswith("models.yaml: ")
    for word in words:
        assert word in message


def test_every_problem_is_reported():
    data = user_type(required=["nmae"])
    data["types"]["user"]["properties"]["pin"] = {"type": "integer", "protection": "sha3-512"}
    with pytest.raises(ModelError) as info:
        parse_models(data, "m.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("m.yaml: type 'user'") for line in lines)


def test_error_message_example_exactly():
    with pytest.raises(ModelError) as info:
        parse_models(with_property("email", {"type": "string", "protection": "sha256"}), "models.yaml")
    assert str(info.value) == (
        "models.yaml: type 'user', property 'email': protection 'sha256' is not one of "
        "plain, bcrypt, sha3-512, encrypt, encrypt-deterministic"
    )


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("models.yaml", "types:\n  user: [\n", ["invalid YAML", "line 3"]),
        (
            "models.yaml",
            "types: {user: {version: '1.0', properties: {a: {}, a: {}}}}\n",
            ["invalid YAML", "duplicate key 'a'"],
        ),
        ("models.yml", "", ["no types declared"]),
        ("models.yml", "types:\n  user:\n    version: 1.0\n    properties: {}\n", ["version must be a string"]),
        ("models.json", '{"types": ', ["invalid JSON", "line 1"]),
        ("models.json", '{"types": {}, "types": {}}', ["invalid JSON", "duplicate key 'types'"]),
        ("models.toml", "[types]\n", ["unsupported extension '.toml'"]),
    ],
)
def test_bad_files(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ModelError) as info:
        load_models(path)
    assert str(info.value).startswith(f"{path}: ")
    for word in words:
        assert word in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ModelError, match=r"absent\.yaml: cannot read: No such file"):
        load_models(path)


def test_yaml_scalars_are_json_like(tmp_path):
    """Unquoted NO stays a string (YAML 1.1 would read it as false), dates stay strings."""
    path = tmp_path / "m.yaml"
    path.write_text(
        "types:\n  t:\n    version: '1.0'\n    properties:\n"
        "      c: {type: string, enum: [NO, SE, yes]}\n      d: {type: string, const: 2024-01-01}\n"
    )
    t = load_models(path).get("t")
    assert t.properties["c"].schema["enum"] == ["NO", "SE", "yes"]
    assert t.properties["d"].schema["const"] == "2024-01-01"
    t.validate({"c": "NO", "d": "2024-01-01"})


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("0316-06-04T23:20:49-12:21", "0316-06-05T11:41:49Z"),  # years below 1000 keep four digits
        ("0001-01-01T00:30:00+00:30", "0001-01-01T00:00:00Z"),
        ("2016-12-31T23:59:60.25+01:00", "2016-12-31T22:59:60.25Z"),  # a leap second moves by hours only
        ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC: kept as written
    ],
)
def test_date_times_are_rewritten_in_utc_with_four_digit_years(given, utc):
    assert utc_date_time(given) == utc
