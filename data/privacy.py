"""Patient ids -> salted keys. The raw id never reaches a file; the salt never sits beside the keys.

A salt stored next to 16-hex-char hashes would let anyone holding the prepared folder brute-force
hospital ids (they are short and sequential), so the salt comes from `--salt` / CXRTUNE_SALT or from a
separate salt file outside the prepared folder that the user keeps apart.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from data.errors import DataError

SALT_ENVIRONMENT_VARIABLE = "CXRTUNE_SALT"
PATIENT_KEY_HEX_CHARS = 16


def default_salt_file(out_dir: Path) -> Path:
    """Beside, not inside, the prepared folder: PREPARED -> PREPARED.patient-salt.SECRET."""
    out_dir = Path(out_dir).resolve()
    return out_dir.with_name(f"{out_dir.name}.patient-salt.SECRET")


def resolve_salt(salt: str | None, out_dir: Path, salt_file: Path | None = None) -> tuple[str, str]:
    """(salt, where it came from: "argument", "environment" or "file <path>").

    A new random salt is created (mode 0600) only when none is given anywhere; re-runs then reuse it,
    so keys stay stable across restarts.
    """
    if salt:
        return salt, "argument"
    if os.environ.get(SALT_ENVIRONMENT_VARIABLE):
        return os.environ[SALT_ENVIRONMENT_VARIABLE], "environment"
    path = Path(salt_file) if salt_file else default_salt_file(out_dir)
    if path.resolve().is_relative_to(Path(out_dir).resolve()):
        raise DataError(f"salt file {path} is inside the prepared folder {out_dir}; keep it outside (and apart)")
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:  # group or others may read it: the keys of every patient are then guessable
            raise DataError(f"salt file {path} can be read by other users (mode {mode:o}): `chmod 600 {path}`, "
                            "and rotate the salt if others may have read it (docs/security.md)")
        stored = path.read_text().strip()
        if not stored:
            raise DataError(f"salt file {path} is empty; delete it to create a new one (patient keys will change)")
        return stored, f"file {path.resolve()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    new_salt = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_salt + "\n")
    return new_salt, f"file {path.resolve()}"


def patient_key(patient_id: str, salt: str) -> str:
    """HMAC-SHA256(salt, id), first 16 hex chars; an empty id gives an empty key (unknown patient)."""
    if not patient_id:
        return ""
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:PATIENT_KEY_HEX_CHARS]


def salt_fingerprint(salt: str) -> str:
    """Tells a restart whether the salt changed, without revealing it: PBKDF2 with 200,000 rounds (~0.1 s),
    so that even a weak salt given by hand is slow to guess from the restart record."""
    return hashlib.pbkdf2_hmac("sha256", salt.encode(), b"cxrtune-salt-check", 200_000).hex()[:16]
