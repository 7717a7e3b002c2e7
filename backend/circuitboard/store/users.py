"""Users, their API tokens and their browser sessions (`circuitboard users ...` and the shared mode's sign-in)."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import timedelta

from sqlalchemy import delete, select, update

from circuitboard.store.credentials import digest, hash_secret, new_token, same, split_token, verify_secret
from circuitboard.store.db import Database, changed_rows
from circuitboard.store.models import SessionRow, TokenRow, UserRow, utcnow
from circuitboard.store.records import UserRecord, as_utc

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
SESSION_TTL = timedelta(days=14)


class UserExists(ValueError):
    pass


def _record(row: UserRow) -> UserRecord:
    return UserRecord(
        id=row.id,
        name=row.name,
        is_admin=row.is_admin,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
        has_password=row.password_hash is not None,
    )


class UserRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        # token id -> digest of the secret that passed argon2 once: argon2 costs ~50 ms, a request must not.
        # The token row and its user are still read on every request, so a revocation holds at once.
        self._verified: dict[str, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------- users
    def add(self, name: str, *, admin: bool = False, password: str | None = None) -> tuple[UserRecord, str]:
        """A new user and their first API token (returned once; only its hash is kept)."""
        if not NAME_RE.match(name):
            raise ValueError("name: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit")
        with self.db.session() as s:
            if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise UserExists(f"name: a user {name!r} already exists")
            row = UserRow(name=name, is_admin=admin, password_hash=hash_secret(password) if password else None)
            s.add(row)
            s.flush()
            user = _record(row)
        return user, self.add_token(user.id)

    def add_token(self, user_id: int) -> str:
        token_id, secret, token = new_token()
        with self.db.session() as s:
            s.add(TokenRow(id=token_id, user_id=user_id, secret_hash=hash_secret(secret)))
        return token

    def set_password(self, name: str, password: str) -> bool:
        with self.db.session() as s:
            res = s.execute(update(UserRow).where(UserRow.name == name).values(password_hash=hash_secret(password)))
            return changed_rows(res) > 0

    def get(self, name: str) -> UserRecord | None:
        with self.db.session() as s:
            row = s.scalar(select(UserRow).where(UserRow.name == name))
            return None if row is None else _record(row)

    def list(self) -> list[UserRecord]:
        with self.db.session() as s:
            return [_record(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def revoke(self, name: str) -> bool:
        """The user can no longer sign in: their tokens and sessions end now. What they made stays theirs."""
        now = utcnow()
        with self.db.session() as s:
            user_id = s.scalar(select(UserRow.id).where(UserRow.name == name, UserRow.revoked_at.is_(None)))
            if user_id is None:
                return False
            s.execute(update(UserRow).where(UserRow.id == user_id).values(revoked_at=now))
            s.execute(update(TokenRow).where(TokenRow.user_id == user_id).values(revoked_at=now))
            s.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
        return True

    # ------------------------------------------------------------------------------------- credentials
    def by_token(self, token: str) -> UserRecord | None:
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        with self.db.session() as s:
            found = s.execute(
                select(TokenRow.secret_hash, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None), UserRow.revoked_at.is_(None))
            ).one_or_none()
            if found is None:
                return None
            stored, user = found
            record = _record(user)
        with self._lock:
            known = self._verified.get(token_id)
        if known is not None and same(known, digest(secret)):
            return record
        if not verify_secret(stored, secret):
            return None
        with self._lock:
            self._verified[token_id] = digest(secret)
        return record

    def by_password(self, name: str, password: str) -> UserRecord | None:
        with self.db.session() as s:
            row = s.scalar(select(UserRow).where(UserRow.name == name, UserRow.revoked_at.is_(None)))
            if row is None or row.password_hash is None:
                return None
            stored, record = row.password_hash, _record(row)
        return record if verify_secret(stored, password) else None

    # ------------------------------------------------------------------------------------- sessions
    def open_session(self, user_id: int) -> tuple[str, str]:
        """(cookie value, CSRF token) of a new browser session."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self.db.session() as s:
            s.execute(delete(SessionRow).where(SessionRow.expires_at < utcnow()))
            s.add(
                SessionRow(
                    id_hash=digest(session_id), user_id=user_id, csrf_token=csrf, expires_at=utcnow() + SESSION_TTL
                )
            )
        return session_id, csrf

    def by_session(self, session_id: str) -> tuple[UserRecord, str] | None:
        """(user, CSRF token) of a live session."""
        with self.db.session() as s:
            found = s.execute(
                select(SessionRow.csrf_token, SessionRow.expires_at, UserRow)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.id_hash == digest(session_id), UserRow.revoked_at.is_(None))
            ).one_or_none()
            if found is None:
                return None
            csrf, expires, user = found
            if (as_utc(expires) or utcnow()) < utcnow():
                return None
            return _record(user), csrf

    def close_session(self, session_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(SessionRow).where(SessionRow.id_hash == digest(session_id)))
