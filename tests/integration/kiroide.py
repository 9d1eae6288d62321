# SPDX-License-Identifier: LGPL-2.1-or-later
"""Generates Kiro IDE token files (KIRO-PROTOCOL.md B §1.1, §1.2) for the import tests:
~/.aws/sso/cache/kiro-auth-token.json (camelCase) and, for IdC logins, the companion
<clientIdHash>.json registration {clientId, clientSecret, expiresAt}.

    f = write_social(dir, refresh_token="rt", provider="Github")
    f = write_idc(dir, refresh_token="rt", client_id="cid", client_secret="cs")
    f.token_path, f.registration_path, f.token (dict)
"""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from kirocli_db import chown_to, profile_arn, rfc3339_millis

TOKEN_FILE = "kiro-auth-token.json"


@dataclasses.dataclass
class IdeFiles:
        token_path: Path
        token: dict
        registration_path: Path | None = None
        registration: dict | None = None

        def paths(self):
                return [p for p in (self.token_path, self.registration_path) if p]


def client_id_hash(client_id):
        # The IDE names the registration after a SHA-1 of its client data; any stable hex name works
        # for us, what matters is that the token file's clientIdHash names the companion file.
        return hashlib.sha1(client_id.encode()).hexdigest()


def social_token(*, refresh_token, access_token=None, expires_at=None, provider="Google",
                 profile_arn_value=None):
        expires_at = time.time() + 7200 if expires_at is None else expires_at
        return {
                "accessToken": access_token or f"at-import-{refresh_token}",
                "refreshToken": refresh_token,
                "profileArn": profile_arn_value or profile_arn("us-east-1"),
                "expiresAt": rfc3339_millis(expires_at),
                "authMethod": "social",
                "provider": provider,
        }


def idc_token(*, refresh_token, client_id, access_token=None, expires_at=None, region="us-east-1",
              provider="BuilderId", profile_arn_value=None, start_url=None):
        expires_at = time.time() + 7200 if expires_at is None else expires_at
        t = {
                "accessToken": access_token or f"at-import-{refresh_token}",
                "refreshToken": refresh_token,
                "expiresAt": rfc3339_millis(expires_at),
                "clientIdHash": client_id_hash(client_id),
                "authMethod": "IdC",
                "provider": provider,
                "region": region,
        }
        if provider == "BuilderId":
                t["profileArn"] = profile_arn_value or profile_arn(region)
        if start_url:
                t["startUrl"] = start_url
        return t


def registration(*, client_id, client_secret, expires_at=None):
        expires_at = time.time() + 90 * 86400 if expires_at is None else expires_at
        return {"clientId": client_id, "clientSecret": client_secret, "expiresAt": rfc3339_millis(expires_at)}


def _write(path, obj, owner):
        path = Path(path)
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
        chown_to([path], owner)
        return path


def write_social(directory, *, owner=None, **kw):
        tok = social_token(**kw)
        return IdeFiles(_write(Path(directory) / TOKEN_FILE, tok, owner), tok)


def write_idc(directory, *, client_id, client_secret, registration_expires_at=None, owner=None,
              write_registration=True, **kw):
        tok = idc_token(client_id=client_id, **kw)
        reg = registration(client_id=client_id, client_secret=client_secret, expires_at=registration_expires_at)
        reg_path = Path(directory) / f"{tok['clientIdHash']}.json"
        if write_registration:
                _write(reg_path, reg, owner)
        return IdeFiles(_write(Path(directory) / TOKEN_FILE, tok, owner), tok,
                        reg_path if write_registration else None, reg)


# ---- bad variants ---------------------------------------------------------------------------------

def write_missing_field(directory, field="refreshToken", *, owner=None):
        """A social token file without `field`."""
        tok = social_token(refresh_token="rt-missing-field")
        del tok[field]
        return IdeFiles(_write(Path(directory) / TOKEN_FILE, tok, owner), tok)


def write_wrong_type(directory, field="expiresAt", value=12345, *, owner=None):
        """A social token file whose `field` has the wrong JSON type (default: a number for expiresAt)."""
        tok = social_token(refresh_token="rt-wrong-type")
        tok[field] = value
        return IdeFiles(_write(Path(directory) / TOKEN_FILE, tok, owner), tok)


def write_expired_registration(directory, *, owner=None, client_id="cid-expired", client_secret="cs-expired"):
        """An IdC token whose companion registration expired yesterday (refresh can never work)."""
        return write_idc(directory, refresh_token="rt-expired-registration", client_id=client_id,
                         client_secret=client_secret, registration_expires_at=time.time() - 86400, owner=owner)


def write_not_json(directory, *, owner=None):
        return IdeFiles(_write(Path(directory) / TOKEN_FILE, "{\"accessToken\": \"x\", ", owner), {})
