# SPDX-License-Identifier: LGPL-2.1-or-later
"""Generates kiro-cli SQLite databases (KIRO-PROTOCOL.md B §1.3) for the import tests.

Schema as the official Q CLI migrations leave it: auth_kv(key TEXT PRIMARY KEY, value TEXT) and
state(key TEXT PRIMARY KEY, value BLOB). Token values are snake_case JSON; expires_at is RFC3339
with 9 fractional digits, as kiro-cli writes it.

    db = make_db(dir / "data.sqlite3", "kirocli:odic:token", refresh_token="rt-1", expires_at=t)
    ...
    db.close()        # releases a connection kept open for a pending WAL or a lock

Variants: every token key of TOKEN_KEYS (OIDC keys get their device registration), a pending WAL
(`pending_wal="insert"`: the token row exists only in the -wal file; `"update"`: the main file
holds an older token and the -wal file the current one), and the broken inputs below.
"""

import dataclasses
import json
import os
import pwd
import sqlite3
import time
from pathlib import Path

TOKEN_KEYS = (
        "kirocli:external-idp:token",
        "kirocli:social:token",
        "kirocli:odic:token",
        "codewhisperer:odic:token",
)
REGISTRATION_KEYS = {
        "kirocli:odic:token": "kirocli:odic:device-registration",
        "codewhisperer:odic:token": "codewhisperer:odic:device-registration",
}
# The auth_method kiro-authd should report for each key (odic keys: depends on the start URL).
BUILDER_ID_START_URL = "https://view.awsapps.com/start"
IDC_START_URL = "https://d-9067abcdef.awsapps.com/start"
OIDC_SCOPES = ["codewhisperer:completions", "codewhisperer:analysis", "codewhisperer:conversations"]
PROFILE_KEY = "api.codewhisperer.profile"


def rfc3339_nanos(epoch, nanos=None):
        """RFC3339 UTC with 9 fractional digits, e.g. 2026-01-02T03:04:05.123456789Z."""
        sec = int(epoch)
        if nanos is None:
                nanos = int(round((epoch - sec) * 1e9)) % 1_000_000_000
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nanos:09d}Z"


def rfc3339_millis(epoch):
        """RFC3339 UTC with milliseconds, as the Kiro IDE writes (2025-12-31T02:32:45.144Z)."""
        sec = int(epoch)
        ms = int((epoch - sec) * 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}Z"


def parse_rfc3339_usec(s):
        """Microseconds since the epoch of an RFC3339 UTC/offset timestamp; fraction truncated to 6."""
        import datetime
        s = s.strip()
        frac = 0
        main, tz = s, "+00:00"
        if s.endswith("Z") or s.endswith("z"):
                main, tz = s[:-1], "+00:00"
        elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
                main, tz = s[:-6], s[-6:]
        if "." in main:
                main, f = main.split(".", 1)
                frac = int((f + "000000")[:6])
        dt = datetime.datetime.fromisoformat(main.replace(" ", "T") + tz)
        return int(dt.timestamp()) * 1_000_000 + frac


def profile_arn(region="us-east-1", account="699475941385", name="EHGA3GRVQMUK"):
        return f"arn:aws:codewhisperer:{region}:{account}:profile/{name}"


def token_value(key, *, access_token, refresh_token, expires_at, region, profile_arn=None,
                start_url=BUILDER_ID_START_URL, token_endpoint=None, client_id=None, expires_at_str=None):
        """The snake_case token JSON kiro-cli stores under key (a dict)."""
        exp = expires_at_str or rfc3339_nanos(expires_at)
        if key == "kirocli:social:token":
                v = {"access_token": access_token, "refresh_token": refresh_token, "expires_at": exp,
                     "region": region}
                if profile_arn:
                        v["profile_arn"] = profile_arn
                return v
        v = {"access_token": access_token, "refresh_token": refresh_token, "expires_at": exp,
             "region": region, "start_url": start_url, "oauth_flow": "DeviceCode", "scopes": OIDC_SCOPES}
        if key == "kirocli:external-idp:token":
                v.update({"auth_method": "external_idp", "provider": "ExternalIdp",
                          "token_endpoint": token_endpoint or "http://127.0.0.1:9/oauth2/token",
                          "issuer_url": "http://127.0.0.1:9/", "client_id": client_id or "ext-client",
                          "audience": "kiro", "oauth_flow": "Pkce"})
                del v["start_url"]
        return v


def registration_value(*, client_id, client_secret, expires_at, region):
        return {"client_id": client_id, "client_secret": client_secret,
                "client_secret_expires_at": rfc3339_nanos(expires_at), "region": region,
                "oauth_flow": "DeviceCode", "scopes": OIDC_SCOPES}


@dataclasses.dataclass
class KiroCliDB:
        path: Path
        key: str | None
        token: dict | None
        registration: dict | None
        profile: dict | None
        holder: sqlite3.Connection | None = None

        def close(self):
                if self.holder is not None:
                        self.holder.close()
                        self.holder = None

        def files(self):
                return [p for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"),
                                    Path(f"{self.path}-journal")) if p.exists()]


def _schema(conn, with_state=True):
        conn.execute("CREATE TABLE IF NOT EXISTS auth_kv (key TEXT PRIMARY KEY, value TEXT)")
        if with_state:
                conn.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB)")
        conn.execute("CREATE TABLE IF NOT EXISTS conversations (key TEXT PRIMARY KEY, value TEXT)")


def chown_to(paths, user):
        if user is None:
                return
        pw = pwd.getpwnam(user)
        for p in paths:
                os.chown(p, pw.pw_uid, pw.pw_gid)


def make_db(path, key="kirocli:social:token", *, refresh_token, access_token=None, expires_at=None,
            region="us-east-1", profile_arn_value=None, start_url=BUILDER_ID_START_URL,
            client_id="client-id-1", client_secret="client-secret-1", registration_expires_at=None,
            registration_region=None, with_state=True, with_registration=True, pending_wal=None,
            old_refresh_token=None, owner=None, token_endpoint=None, extra_auth_kv=None):
        """Writes a kiro-cli database with one token under `key` and returns a KiroCliDB.

        pending_wal: None (everything in the main file, rollback journal), "insert" (the token row
        only in the -wal file) or "update" (main file has old_refresh_token, -wal the new row).
        Keep the returned object until the import is done; close() it afterwards.
        """
        path = Path(path)
        now = time.time()
        expires_at = now + 7200 if expires_at is None else expires_at
        access_token = access_token or f"at-import-{refresh_token}"
        arn = profile_arn_value if profile_arn_value is not None else profile_arn(region)
        token = token_value(key, access_token=access_token, refresh_token=refresh_token,
                            expires_at=expires_at, region=region,
                            profile_arn=arn if key == "kirocli:social:token" else None,
                            start_url=start_url, token_endpoint=token_endpoint)
        registration = None
        reg_key = REGISTRATION_KEYS.get(key)
        if reg_key and with_registration:
                registration = registration_value(
                        client_id=client_id, client_secret=client_secret,
                        expires_at=registration_expires_at if registration_expires_at is not None else now + 90 * 86400,
                        region=registration_region or region)
        profile = {"arn": arn, "profile_name": "kiro-test"} if arn else None

        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
                p.unlink(missing_ok=True)

        conn = sqlite3.connect(path, isolation_level=None)
        if pending_wal:
                assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.execute("BEGIN")
        _schema(conn, with_state)
        if registration:
                conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (reg_key, json.dumps(registration)))
        if profile and with_state:
                conn.execute("INSERT INTO state VALUES (?, ?)", (PROFILE_KEY, json.dumps(profile).encode()))
        if with_state:
                conn.execute("INSERT INTO state VALUES (?, ?)", ("telemetryClientId", b'"0c5d2b9e"'))
        for k, v in (extra_auth_kv or {}).items():
                conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (k, v if isinstance(v, str) else json.dumps(v)))
        if pending_wal == "update":
                old = dict(token, refresh_token=old_refresh_token or f"{refresh_token}-old",
                           access_token=f"{access_token}-old")
                conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (key, json.dumps(old)))
        elif not pending_wal:
                conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (key, json.dumps(token)))
        conn.execute("COMMIT")

        holder = None
        if pending_wal:
                # Everything so far goes into the main file; what follows stays in the -wal file,
                # because no checkpoint runs: autocheckpoint is off, and a second connection is kept
                # open so that closing the writer does not checkpoint either.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                holder = sqlite3.connect(path, isolation_level=None)
                holder.execute("PRAGMA wal_autocheckpoint=0")
                holder.execute("SELECT count(*) FROM auth_kv").fetchone()
                conn.execute("PRAGMA wal_autocheckpoint=0")
                if pending_wal == "insert":
                        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (key, json.dumps(token)))
                elif pending_wal == "update":
                        conn.execute("UPDATE auth_kv SET value=? WHERE key=?", (json.dumps(token), key))
                else:
                        raise ValueError(pending_wal)
        conn.close()

        db = KiroCliDB(path, key, token, registration, profile, holder)
        chown_to(db.files(), owner)
        return db


def make_db_without_token(path, *, owner=None, region="us-east-1"):
        """A well-formed kiro-cli database with a registration and a profile but no token key."""
        path = Path(path)
        path.unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        _schema(conn)
        reg = registration_value(client_id="c", client_secret="s", expires_at=time.time() + 86400, region=region)
        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", ("kirocli:odic:device-registration", json.dumps(reg)))
        conn.execute("INSERT INTO state VALUES (?, ?)",
                     (PROFILE_KEY, json.dumps({"arn": profile_arn(region), "profile_name": "p"}).encode()))
        conn.close()
        chown_to([path], owner)
        return KiroCliDB(path, None, None, reg, None)


def make_locked_db(path, *, owner=None, **kw):
        """A valid database (rollback journal) on which this process holds an EXCLUSIVE lock until
        close(): every other reader gets SQLITE_BUSY."""
        db = make_db(path, owner=owner, **kw)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        db.holder = holder
        chown_to(db.files(), owner)
        return db


def make_corrupt_db(path, *, owner=None, **kw):
        """A database whose header is intact but whose table pages are garbage."""
        db = make_db(path, **kw)
        data = bytearray(Path(path).read_bytes())
        page_size = int.from_bytes(data[16:18], "big") or 65536
        assert len(data) >= 2 * page_size, "expected at least two pages"
        for i in range(page_size, len(data)):
                data[i] = (i * 7 + 0x5A) & 0xFF
        Path(path).write_bytes(bytes(data))
        chown_to([path], owner)
        try:
                sqlite3.connect(path).execute("SELECT value FROM auth_kv").fetchall()
        except sqlite3.DatabaseError:
                pass
        else:
                raise AssertionError("make_corrupt_db produced a readable database")
        return db


def make_empty_file(path, *, owner=None):
        Path(path).write_bytes(b"")
        chown_to([path], owner)
        return Path(path)


def make_non_sqlite(path, *, owner=None):
        Path(path).write_bytes(b"This is not a database, just text that kiro-cli never wrote.\n" * 64)
        chown_to([path], owner)
        return Path(path)


def read_token(path, key):
        """The token value as any SQLite reader sees it (main file plus WAL)."""
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
                row = conn.execute("SELECT value FROM auth_kv WHERE key=?", (key,)).fetchone()
                return json.loads(row[0]) if row else None
        finally:
                conn.close()
