"""Secret fields as each kind's schema marks them, and the redaction that follows the marking."""

from __future__ import annotations

from typing import Any

import pytest

from opensergo.controlplane.api.redact import (
    CHANGED,
    PLACEHOLDER,
    clear_secrets,
    placeholder_path,
    redact,
    redact_changes,
    restore,
)
from opensergo.spec import kinds
from opensergo.spec.kinds import secrets_of
from opensergo.spec.secrets import (
    MARK,
    SECRET_URL,
    has_secrets,
    is_secret_name,
    mask_url,
    model_secrets,
    unmask_url,
)

pytestmark = pytest.mark.unit

DB = "database.opensergo.io/v1alpha1"


def endpoint(url: str, password: str | None = "pw") -> dict[str, Any]:
    mysql: dict[str, Any] = {"url": url, "username": "app"}
    if password is not None:
        mysql["password"] = password
    return {
        "apiVersion": DB,
        "kind": "DatabaseEndpoint",
        "metadata": {"name": "db"},
        "spec": {"database": {"MySQL": mysql}},
    }


def test_every_kind_with_secrets_marks_them_in_its_schema() -> None:
    info = kinds.lookup("DatabaseEndpoint")
    schema = info.model.model_json_schema()
    assert '"x-opensergo-secret": "url"' in str(schema).replace("'", '"')
    mysql = model_secrets(info.model).child("spec").child("database").child("MySQL")
    assert mysql.child("password").mark == "value" and mysql.child("url").mark == "url"
    assert mysql.child("username").mark is None
    enc = model_secrets(kinds.lookup("Encryption").model)
    props = enc.child("spec").child("encryptors").child("aes").child("props")
    assert props.keys and props.entry_mark("aes-key-value") == "value"
    assert props.entry_mark("digest-algorithm-name") is None
    assert SECRET_URL == {MARK: "url"}
    rate = model_secrets(kinds.lookup("RateLimitStrategy").model)
    assert rate.fields == {}  # nothing secret to mark


@pytest.mark.parametrize(
    "name", ["password", "dbPassword", "aes-key-value", "sm4-key", "sm4-iv", "Authorization", "accessToken"]
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["digest-algorithm-name", "sharding-count", "algorithm-expression", "keyGeneratorName", "tokens"]
)
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_url_credentials() -> None:
    url = "jdbc:mysql://u:p%40ss@h:3306/db?user=u&password=s3cret&useSSL=false;pwd=x"
    masked = mask_url(url, PLACEHOLDER)
    assert masked == "jdbc:mysql://u:******@h:3306/db?user=u&password=******&useSSL=false;pwd=******"
    assert unmask_url(masked.replace("h:3306", "h2:3306"), url, PLACEHOLDER) == url.replace(
        "h:3306", "h2:3306"
    )
    assert (
        mask_url("jdbc:mysql://h:3306/db?useSSL=false", PLACEHOLDER) == "jdbc:mysql://h:3306/db?useSSL=false"
    )


def test_redaction_restore_and_diffs_follow_the_marking() -> None:
    stored = endpoint("jdbc:mysql://h/db?password=abc", "pw")
    shown = redact(stored)
    assert shown["spec"]["database"]["MySQL"] == {
        "url": "jdbc:mysql://h/db?password=******",
        "username": "app",
        "password": PLACEHOLDER,
    }
    assert restore(shown, stored) == stored
    assert placeholder_path(shown) == ("spec", "database", "MySQL", "url")
    assert placeholder_path(restore(shown, stored)) is None
    assert has_secrets(stored, secrets_of(stored)) and not has_secrets(
        endpoint("jdbc:x", None), secrets_of(stored)
    )
    # A diff of stored data compares; a body a caller wrote never does.
    same = redact_changes(stored, stored)
    assert same["spec"]["database"]["MySQL"]["password"] == PLACEHOLDER
    guessed = redact_changes(stored, stored, compare=False)
    assert guessed["spec"]["database"]["MySQL"]["password"] == CHANGED
    assert guessed["spec"]["database"]["MySQL"]["url"].endswith(CHANGED)
    assert redact_changes(stored, shown, compare=False) == shown
    assert clear_secrets(stored) and not clear_secrets(shown)


def test_unknown_kinds_fall_back_to_secret_names() -> None:
    body = {"apiVersion": "x/v1", "kind": "Y", "spec": {"password": "pw", "nested": [{"apiKey": "k"}]}}
    assert redact(body)["spec"] == {"password": PLACEHOLDER, "nested": [{"apiKey": PLACEHOLDER}]}
