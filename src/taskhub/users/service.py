"""Business rules for accounts: profile changes, password changes, deletion, admin changes.

Services flush, never commit: the caller's unit of work commits once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth.cache import AuthCache, invalidate_after_commit
from taskhub.core.cache import ResponseCache
from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.pagination import PageParams, decode_cursor, encode_cursor
from taskhub.core.security import PasswordHasher, normalize_email, password_problem
from taskhub.core.timeutil import utcnow
from taskhub.tasks import service as task_service
from taskhub.users import repository as user_repo
from taskhub.users.errors import EmailTaken, LastAdmin, UserNotFound, WrongPassword
from taskhub.users.models import User
from taskhub.users.schemas import USER_SORT, USER_SORT_KEY, UserPage, UserRead


def token_cutoff(now: datetime | None = None) -> datetime:
    """A ``tokens_valid_after`` value: now, floored to the millisecond like access-token ``iat``."""
    now = now or utcnow()
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def check_password(password: str, email: str, *, field: str) -> None:
    """Raise 422 naming ``field`` when ``password`` breaks the rules of ``password_problem``.

    Raises:
        UnprocessableEntity: too short/long, equal to the email, or common (NIST SP 800-63B).
    """
    problem = password_problem(password, email)
    if problem:
        raise UnprocessableEntity(
            f"The password {problem}.", errors=[field_error(["body", field], f"Password {problem}")]
        )


async def create_user(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    email: str,
    password: str,
    name: str,
    role: str = "user",
    time_zone: str = "UTC",
) -> User:
    """Create an account; ``time_zone`` is an IANA name the caller validated (``TimeZoneName``).

    Raises:
        UnprocessableEntity: password rules. EmailTaken: the normalized email exists.
    """
    check_password(password, email, field="password")
    normalized = normalize_email(email)
    # Hash before the first statement: on SQLite that statement takes the write lock, which
    # must not be held during the ~20-40 ms of argon2.
    password_hash = await hasher.hash(password)
    if await user_repo.get_by_email(session, normalized) is not None:
        raise EmailTaken(f"An account with the email {email!r} already exists.")
    now = utcnow()
    user = User(
        email=email,
        email_normalized=normalized,
        name=name,
        password_hash=password_hash,
        role=role,
        is_active=True,
        time_zone=time_zone,
        tokens_valid_after=token_cutoff(now),
        created_at=now,
        updated_at=now,
    )
    user_repo.add(session, user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise EmailTaken(f"An account with the email {email!r} already exists.") from exc
    return user


async def _require_password(hasher: PasswordHasher, user: User, password: str | None, field: str) -> None:
    if password is None:
        raise UnprocessableEntity(
            "The current password is required for this change.",
            errors=[field_error(["body", field], "Field required to confirm this change", "missing")],
        )
    if not await hasher.verify(password, user.password_hash):
        raise WrongPassword("The current password is incorrect.")


async def _load_self(session: AsyncSession, actor: User) -> User:
    """The caller's own row, loaded (and locked) in this unit of work: ``actor`` comes from
    authentication and belongs to no session. Raises: UserNotFound (deleted meanwhile)."""
    user = await user_repo.get_for_update(session, actor.id)
    if user is None:
        raise UserNotFound(f"No user with id {actor.id}.")
    return user


async def update_profile(
    session: AsyncSession,
    hasher: PasswordHasher,
    actor: User,
    *,
    name: str | None,
    email: str | None,
    current_password: str | None,
    auth_cache: AuthCache,
    cache: ResponseCache,
    time_zone: str | None = None,
) -> User:
    """Change ``name``, ``email`` and/or ``time_zone``; a new email needs the current password.

    A new ``time_zone`` (an IANA name the caller validated) moves every all-day task of the user
    to the end of its day in that zone, in this unit of work (``tasks.service.move_all_day``;
    ``cache`` is the task-list cache those writes invalidate).

    Raises:
        UnprocessableEntity: email change without ``current_password``. WrongPassword: it is wrong.
        EmailTaken: the new email belongs to another account.
    """
    user = await _load_self(session, actor)
    changed = False
    if email is not None and email != user.email:
        await _require_password(hasher, user, current_password, "current_password")
        normalized = normalize_email(email)
        if normalized != user.email_normalized:
            other = await user_repo.get_by_email(session, normalized)
            if other is not None and other.id != user.id:
                raise EmailTaken(f"An account with the email {email!r} already exists.")
        user.email, user.email_normalized = email, normalized
        changed = True
    if name is not None and name != user.name:
        user.name = name
        changed = True
    if time_zone is not None and time_zone != user.time_zone:
        user.time_zone = time_zone
        changed = True
        await task_service.move_all_day(session, user.id, time_zone, cache=cache)
    if changed:
        user.updated_at = utcnow()
        try:
            await session.flush()
        except IntegrityError as exc:
            raise EmailTaken(f"An account with the email {email!r} already exists.") from exc
        invalidate_after_commit(session, auth_cache, user.id)  # cached decisions hold the old profile
    return user


async def change_password(
    session: AsyncSession,
    hasher: PasswordHasher,
    actor: User,
    *,
    current_password: str,
    new_password: str,
    auth_cache: AuthCache,
) -> None:
    """Set a new password and invalidate every token issued before (``tokens_valid_after``).

    Raises:
        WrongPassword: ``current_password`` is wrong. UnprocessableEntity: the new one breaks the rules.
    """
    user = await _load_self(session, actor)
    await _require_password(hasher, user, current_password, "current_password")
    await set_password(session, hasher, user, new_password, auth_cache=auth_cache, field="new_password")


async def set_password(
    session: AsyncSession,
    hasher: PasswordHasher,
    user: User,
    new_password: str,
    *,
    auth_cache: AuthCache,
    field: str = "password",
) -> None:
    """Give ``user`` (loaded in this unit of work) a new password and revoke every token issued
    before (``tokens_valid_after``): the common part of a password change and of the operator's
    ``taskhub reset-password``.

    Raises:
        UnprocessableEntity: the password breaks the rules (naming ``field``).
    """
    check_password(new_password, user.email, field=field)
    now = utcnow()
    user.password_hash = await hasher.hash(new_password)
    user.tokens_valid_after = token_cutoff(now)
    user.updated_at = now
    await session.flush()
    invalidate_after_commit(session, auth_cache, user.id)


async def sign_out_everywhere(session: AsyncSession, actor: User, *, auth_cache: AuthCache) -> None:
    """End every session of the caller on every device, this one included: every access and
    refresh token issued before now stops working (``tokens_valid_after``, as after a password
    change, but the password stays). The caller signs in again to get a new pair.

    Raises:
        UserNotFound: the account was deleted meanwhile.
    """
    user = await _load_self(session, actor)
    user.tokens_valid_after = token_cutoff()
    await session.flush()
    invalidate_after_commit(session, auth_cache, user.id)  # cached "token is valid" decisions end too


@dataclass(frozen=True, slots=True)
class AdminGrant:
    """What :func:`grant_admin` did: the account's email, and which of created / promoted /
    reactivated / password_reset happened (none of them: it already was an active admin)."""

    email: str
    user_id: uuid.UUID
    created: bool = False
    promoted: bool = False
    reactivated: bool = False
    password_reset: bool = False


async def grant_admin(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    email: str,
    name: str,
    password: str | None,
    reset_password: bool,
    auth_cache: AuthCache,
) -> AdminGrant:
    """Make ``email`` an active admin (``taskhub create-admin``): create the account with
    ``password``, or promote and re-activate an existing one, whose password changes only with
    ``reset_password`` (and then its tokens are revoked). An account that already is an active
    admin is left as it is unless ``reset_password``.

    Raises:
        UnprocessableEntity: ``password`` breaks the rules, or is None where one is needed.
        EmailTaken: a concurrent registration took the email.
    """
    found = await user_repo.get_by_email(session, normalize_email(email))
    if found is None:
        if password is None:
            raise UnprocessableEntity("A new admin needs a password.")
        user = await create_user(session, hasher, email=email, password=password, name=name, role="admin")
        return AdminGrant(user.email, user.id, created=True)
    user = await user_repo.get_for_update(session, found.id) or found
    promoted, reactivated = user.role != "admin", not user.is_active
    if promoted or reactivated:
        user.role, user.is_active = "admin", True
        user.updated_at = utcnow()
        await session.flush()
        invalidate_after_commit(session, auth_cache, user.id)
    if reset_password:
        if password is None:
            raise UnprocessableEntity("--reset-password needs the new password.")
        await set_password(session, hasher, user, password, auth_cache=auth_cache)
    return AdminGrant(user.email, user.id, promoted=promoted, reactivated=reactivated, password_reset=reset_password)


async def reset_password(
    session: AsyncSession, hasher: PasswordHasher, *, email: str, password: str, auth_cache: AuthCache
) -> User:
    """Set a new password on the account ``email`` (any role, active or not) and revoke its
    tokens, as a password change does (``taskhub reset-password``).

    Raises:
        UserNotFound: no account has that email. UnprocessableEntity: the password breaks the rules.
    """
    found = await user_repo.get_by_email(session, normalize_email(email))
    user = await user_repo.get_for_update(session, found.id) if found is not None else None
    if user is None:
        raise UserNotFound(f"No account with the email {email!r}.")
    await set_password(session, hasher, user, password, auth_cache=auth_cache)
    return user


async def _ensure_not_last_admin(session: AsyncSession, user: User) -> None:
    if user.role != "admin" or not user.is_active:
        return
    admins = await user_repo.active_admin_ids(session, lock=True)
    if admins == [user.id] or len(admins) <= 1:
        raise LastAdmin("The last active admin cannot be demoted, deactivated or deleted.")


async def delete_account(
    session: AsyncSession, hasher: PasswordHasher, actor: User, *, current_password: str, auth_cache: AuthCache
) -> None:
    """Delete the caller's account and all of its tasks.

    Raises:
        WrongPassword: the password is wrong. LastAdmin: the caller is the last active admin.
    """
    user = await _load_self(session, actor)
    await _require_password(hasher, user, current_password, "current_password")
    await _ensure_not_last_admin(session, user)
    await task_service.delete_all_of(session, user.id)
    await user_repo.delete_user(session, user)
    invalidate_after_commit(session, auth_cache, user.id)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """Load a user. Raises: UserNotFound."""
    user = await user_repo.get(session, user_id)
    if user is None:
        raise UserNotFound(f"No user with id {user_id}.")
    return user


async def admin_update(
    session: AsyncSession,
    actor: User,
    target: User,
    *,
    role: str | None,
    is_active: bool | None,
    auth_cache: AuthCache,
) -> User:
    """Change a user's ``role`` and/or ``is_active``; deactivation invalidates their tokens.

    Raises:
        LastAdmin: the change would leave no active admin.
    """
    demotes = role is not None and role != "admin" and target.role == "admin"
    deactivates = is_active is False and target.is_active
    if demotes or deactivates:
        await _ensure_not_last_admin(session, target)
    now = utcnow()
    changed = False
    if role is not None and role != target.role:
        target.role = role
        changed = True
    if is_active is not None and is_active != target.is_active:
        target.is_active = is_active
        if not is_active:
            target.tokens_valid_after = token_cutoff(now)
        changed = True
    if changed:
        target.updated_at = now
        await session.flush()
        invalidate_after_commit(session, auth_cache, target.id)
    return target


async def admin_delete(session: AsyncSession, actor: User, target: User, *, auth_cache: AuthCache) -> None:
    """Delete any user and their tasks. Raises: LastAdmin."""
    await _ensure_not_last_admin(session, target)
    await task_service.delete_all_of(session, target.id)
    await user_repo.delete_user(session, target)
    invalidate_after_commit(session, auth_cache, target.id)


async def list_users(session: AsyncSession, *, q: str | None, paging: PageParams) -> UserPage:
    """A page of users newest first (ties by id) whose email or name contains ``q``.

    Offset mode counts ``total``; keyset mode (``paging.cursor``) does not.
    Raises: UnprocessableEntity (a bad cursor).
    """
    page = paging.offset_page
    total = None
    offset = None
    after = None
    if page is None:
        assert paging.cursor is not None
        after = decode_cursor(paging.cursor, USER_SORT, USER_SORT_KEY)
    else:
        total = await user_repo.count_users(session, q=q)
        offset = (page - 1) * paging.limit
    rows = await user_repo.list_users(session, q=q, limit=paging.limit + 1, offset=offset, after=after)
    users = rows[: paging.limit]
    has_more = len(rows) > paging.limit
    return UserPage(
        items=[UserRead.model_validate(u) for u in users],
        limit=paging.limit,
        page=page,
        total=total,
        next_cursor=(
            encode_cursor(USER_SORT, USER_SORT_KEY, users[-1].created_at, users[-1].id) if has_more and users else None
        ),
    )
