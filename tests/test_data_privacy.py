"""The salt file: created owner-only, and refused when others may read it."""
from __future__ import annotations

import pytest

from data.errors import DataError
from data.privacy import resolve_salt


def test_a_salt_file_other_users_can_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CXRTUNE_SALT", raising=False)
    out = tmp_path / "prepared"
    salt, source = resolve_salt(None, out)  # created 0600 beside the prepared folder
    salt_file = tmp_path / "prepared.patient-salt.SECRET"
    assert source == f"file {salt_file}" and (salt_file.stat().st_mode & 0o777) == 0o600
    assert resolve_salt(None, out) == (salt, source)  # reused as it is
    salt_file.chmod(0o644)
    with pytest.raises(DataError, match=r"can be read by other users \(mode 644\).*chmod 600") as caught:
        resolve_salt(None, out)
    assert salt not in str(caught.value)
