# SPDX-License-Identifier: LGPL-2.1-or-later
"""A refresh whose rotated token cannot be written hands out nothing until it is on disk (DESIGN.md §1.5)."""
import os

import dbusmini
import kirodtest
import pytest
from test_authd import bus_import, cred_path


def test_unstorable_refresh_hands_out_nothing_until_written(users, authd, fake_auth, dbus):
        fake_auth.seed("rt-store-0", kind="social", lineage="store")
        a = authd(RetryInitialSec=1)
        bus_import(dbus, "refresh-token", "rt-store-0", cred_id="store")
        kirodtest.wait_until(lambda: fake_auth.count(lineage="store", outcome="rotated") >= 1, timeout=10,
                             what="the first refresh")
        kirodtest.wait_until(lambda: a.read_credential("store").get("refresh_token") ==
                             fake_auth.latest_refresh_token("store"), timeout=10, what="the first rotation on disk")

        # The credentials directory becomes unwritable; a forced refresh rotates the token at the server.
        os.chmod(a.credentials_dir, 0o500)
        try:
                with pytest.raises(dbusmini.DBusError) as e:
                        dbus("Refresh", "t", [0], path=cred_path("store"), interface=kirodtest.CREDENTIAL_IFACE)
                assert e.value.name == "org.kirod.Auth1.Error.StorageFailed"
                rotated = fake_auth.latest_refresh_token("store")
                assert a.read_credential("store")["refresh_token"] != rotated
                with pytest.raises(dbusmini.DBusError) as e:
                        dbus("GetToken", "sst", ["kiro", "store", 0])
                assert e.value.name == "org.kirod.Auth1.Error.StorageFailed"
        finally:
                os.chmod(a.credentials_dir, 0o700)

        # Writable again: the next GetToken writes first, then answers with the new token.
        cid, token, _, _ = dbus("GetToken", "sst", ["kiro", "store", 0])
        assert cid == "store"
        assert token == fake_auth.latest_access_token("store")
        assert a.read_credential("store")["refresh_token"] == fake_auth.latest_refresh_token("store")
