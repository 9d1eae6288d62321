"""Issue 17 item "Ids": an import without --id gets an id derived from the account (docs/kiroctl.md
"Credential ids"); a second account gets another id, the same account again is found."""

import hashlib
import re
import time

import kirocli_db
import kirodtest
from kirodtest import TEST_ADMIN
from test_authd import home, only, status  # noqa: F401  (home is a fixture)


def _ids(kiroctl):
        return sorted(status(kiroctl))


def _rt_file(home, name, token):
        f = home / name
        f.write_text(token + "\n")
        kirocli_db.chown_to([f], TEST_ADMIN)
        return f


def test_two_bare_refresh_tokens_get_two_ids(authd, fake_auth, kiroctl, home):
        authd()
        fake_auth.seed("rt-first")
        fake_auth.seed("rt-second")
        kiroctl("import", "--refresh-token-file", _rt_file(home, "a", "rt-first"), user=TEST_ADMIN)
        kiroctl("import", "--refresh-token-file", _rt_file(home, "b", "rt-second"), user=TEST_ADMIN)
        # A bare refresh token names no account (only secrets): numbered ids.
        assert _ids(kiroctl) == ["kiro-social", "kiro-social-2"]


def _db(home, name, *, region, client_id, account):
        return kirocli_db.make_db(home / name, "kirocli:odic:token", refresh_token=f"rt-{name}",
                                  expires_at=time.time() + 7200, region=region, client_id=client_id,
                                  client_secret="cs", owner=TEST_ADMIN,
                                  profile_arn_value=kirocli_db.profile_arn(region, account=account, name=name.upper()))


def expected_id(db, client_id):
        """docs/kiroctl.md: SHA-256 over provider, method, profile ARN, start URL, client id and token
        endpoint, each NUL-terminated; the first 8 hex digits."""
        arn = db.profile["arn"]
        fields = ["kiro", "builder-id", arn, kirocli_db.BUILDER_ID_START_URL, client_id, ""]
        key = b"".join(f.encode() + b"\0" for f in fields)
        return "kiro-builder-id-" + hashlib.sha256(key).hexdigest()[:8]


def test_kiro_cli_accounts_get_derived_ids_and_the_same_account_is_found(authd, fake_auth, kiroctl, home):
        authd()
        one = _db(home, "one", region="eu-central-1", client_id="cid-one", account="111122223333")
        two = _db(home, "two", region="eu-central-1", client_id="cid-two", account="444455556666")
        try:
                kiroctl("import", "--from-kiro-cli", "--db", one.path, user=TEST_ADMIN)
                kiroctl("import", "--from-kiro-cli", "--db", two.path, user=TEST_ADMIN)
                ids = _ids(kiroctl)
                # Exactly the documented derivation: stable, and never from a token.
                assert ids == sorted([expected_id(one, "cid-one"), expected_id(two, "cid-two")]), ids
                for i in ids:
                        assert re.fullmatch(r"kiro-builder-id-[0-9a-f]{8}", i), i

                # The same account again: refused, naming the credential it already is.
                p = kiroctl("import", "--from-kiro-cli", "--db", one.path, user=TEST_ADMIN, check=False)
                assert p.returncode != 0
                named = [i for i in ids if f"'{i}'" in p.stderr]
                assert len(named) == 1 and "imported already" in p.stderr and "--replace" in p.stderr, p.stderr
                assert _ids(kiroctl) == ids

                # --replace updates that very credential instead of adding a third.
                kiroctl("import", "--from-kiro-cli", "--db", one.path, "--replace", user=TEST_ADMIN)
                assert _ids(kiroctl) == ids
        finally:
                one.close()
                two.close()
