"""`circuitboard users add|list|revoke|token|password`: the accounts of a shared server (CIRCUITBOARD_AUTH=required,
or any server reachable on a non-loopback address). Tokens are printed once, alone on the last line; the
database keeps only their argon2 hashes."""

from __future__ import annotations

import argparse
import getpass
import sys

from circuitboard.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("users", help="accounts of a shared server: add, list, revoke")
    p.add_argument("--db", default=None, help="SQLAlchemy database URL (default: the server's)")
    sub = p.add_subparsers(dest="users_command", metavar="ACTION")
    sub.required = True
    add = sub.add_parser("add", help="add a user; prints their new API token alone on the last line")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may delete and overwrite what others made")
    add.add_argument("--password", action="store_true", help="also set a password for the page's sign-in (asked)")
    add.set_defaults(func=_add)
    sub.add_parser("list", help="list users").set_defaults(func=_list)
    revoke = sub.add_parser("revoke", help="end a user's tokens and sessions; what they made stays")
    revoke.add_argument("name")
    revoke.set_defaults(func=_revoke)
    token = sub.add_parser("token", help="a further API token for a user (printed alone on the last line)")
    token.add_argument("name")
    token.set_defaults(func=_token)
    password = sub.add_parser("password", help="set a user's password (asked)")
    password.add_argument("name")
    password.set_defaults(func=_password)


def _store(args: argparse.Namespace):
    from circuitboard.store import Store

    settings = Settings(**({"database_url": args.db} if args.db else {}))
    return Store(settings.resolved_database_url)


def _ask_password() -> str:
    if not sys.stdin.isatty():  # scripted: the password is the first line of stdin
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    from circuitboard.store import UserExists

    password = _ask_password() if args.password else None
    store = _store(args)
    try:
        user, token = store.users.add(args.name, admin=args.admin, password=password)
    except (UserExists, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"added {'admin ' if user.is_admin else ''}user {user.name}; their API token (shown once):")
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        users = store.users.list()
    finally:
        store.close()
    for u in users:
        flags = [f for f, on in (("admin", u.is_admin), ("password", u.has_password), ("revoked", u.revoked)) if on]
        print(f"{u.name}\t{u.created_at:%Y-%m-%d}\t{','.join(flags)}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        done = store.users.revoke(args.name)
    finally:
        store.close()
    print(f"revoked {args.name}" if done else f"no active user {args.name!r}", file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


def _token(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        user = store.users.get(args.name)
        if user is None or user.revoked:
            print(f"no active user {args.name!r}", file=sys.stderr)
            return 1
        token = store.users.add_token(user.id)
    finally:
        store.close()
    print(f"a new API token for {user.name} (shown once):")
    print(token)
    return 0


def _password(args: argparse.Namespace) -> int:
    password = _ask_password()
    store = _store(args)
    try:
        done = store.users.set_password(args.name, password)
    finally:
        store.close()
    if not done:
        print(f"no user {args.name!r}", file=sys.stderr)
    return 0 if done else 1
