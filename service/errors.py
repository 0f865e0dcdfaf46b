"""fitq's one error tree.

    FitqError                 500 — a bug of ours; never raised for client input
    ├── InvalidInput          422 — a request that is well-formed but wrong
    │   ├── InvalidSpec       422 — a model spec that cannot be trained
    │   └── InvalidDataset    422 — an upload that is not a usable dataset
    ├── Unauthorized          401 — no valid API key
    ├── NotFound              404 — does not exist, or belongs to another key
    ├── Conflict              409 — the resource is in a state that forbids this
    ├── PayloadTooLarge       413 — a body over the configured limit
    ├── TooManyRequests       429 — a per-key quota is full (with ``Retry-After``)
    └── StaleAttempt          409 — a worker write from a superseded attempt (fencing)

Services raise these; one handler in the API renders them as
``{"detail": message}`` (plus ``loc`` where a field is to blame). Nothing
below the API layer raises ``HTTPException``. Each class's docstring is its
default message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FitqError(Exception):
    """Internal error."""

    status_code: int = 500
    headers: Mapping[str, str] = {}
    """Response headers the API sends with this error."""

    def __init__(self, message: str | None = None, *, loc: Sequence[str | int] | None = None):
        self.message = message or (self.__doc__ or "").strip()
        self.loc = list(loc) if loc is not None else None
        super().__init__(self.message)

    def to_detail(self) -> dict[str, object]:
        """The JSON body the API sends for this error."""
        body: dict[str, object] = {"detail": self.message}
        if self.loc is not None:
            body["loc"] = self.loc
        return body


class InvalidInput(FitqError):
    """The request is not valid."""

    status_code = 422


class InvalidSpec(InvalidInput):
    """The model spec is not valid."""


class InvalidDataset(InvalidInput):
    """The uploaded file is not a usable dataset."""


class Unauthorized(FitqError):
    """A valid API key is required (Authorization: Bearer <key>)."""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class NotFound(FitqError):
    """Not found."""

    status_code = 404


class Conflict(FitqError):
    """The resource is in a state that does not allow this."""

    status_code = 409


class PayloadTooLarge(FitqError):
    """The request body is over the configured limit."""

    status_code = 413


class TooManyRequests(FitqError):
    """A quota of this key is full; retry later."""

    status_code = 429

    def __init__(self, message: str | None = None, *, retry_after_seconds: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_seconds)}


class StaleAttempt(Conflict):
    """This attempt was superseded; its write is refused."""
