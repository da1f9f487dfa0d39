"""The service user's flags and the refusal of an account with the admin role."""

from __future__ import annotations

import pytest

from data_service.config import ConfigError
from data_service.service_user import PASSWORD_ENV, Refused, ServiceUser, claim

PASSWORD = "member-Passw0rd-long"


def test_service_user_from_flags(tmp_path):
    assert ServiceUser.from_args({}) is None
    file = tmp_path / "pw"
    file.write_text(PASSWORD + "\n")
    file.chmod(0o600)  # a secret file (docs/security.md, "Secret files")
    user = ServiceUser.from_args({"--service-user": "svc", "--service-user-password-file": str(file)})
    assert user == ServiceUser("svc", PASSWORD) and PASSWORD not in repr(user)
    assert ServiceUser.from_args({"--service-user": "svc"}, {PASSWORD_ENV: PASSWORD}) == user
    adopting = {"--service-user": "svc", "--service-user-adopt": True}
    assert ServiceUser.from_args(adopting, {PASSWORD_ENV: PASSWORD}) == ServiceUser("svc", PASSWORD, adopt=True)
    for args, env in (
        ({"--service-user": "svc"}, {}),  # no password
        ({"--service-user": "svc"}, {PASSWORD_ENV: "short"}),
        ({"--service-user": "_admin"}, {PASSWORD_ENV: PASSWORD}),
        ({"--service-user": "svc", "--service-user-password-file": str(tmp_path / "missing")}, {}),
        ({"--service-user-adopt": True}, {PASSWORD_ENV: PASSWORD}),  # adopt whom?
    ):
        with pytest.raises(ConfigError):
            ServiceUser.from_args(args, env)


def test_an_account_with_the_admin_role_is_refused_even_when_adopted():
    user = ServiceUser("svc", PASSWORD, adopt=True)
    with pytest.raises(Refused, match="is a server admin"):
        claim(user, {"_id": user.doc_id, "name": "svc", "roles": ["_admin"]}, logs_in=True, admin=False)
    assert claim(user, {"_id": user.doc_id, "name": "svc", "roles": ["reader"]}, logs_in=True, admin=False).doc
