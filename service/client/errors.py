"""The client's errors: the API's refusals (:class:`ApiError`) and a job that
did not succeed (:class:`JobFailed`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fitq.service.client.job import Job


class ApiError(Exception):
    """A non-2xx answer: its status and the server's ``detail``."""

    def __init__(self, status_code: int, detail: Any):
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{status_code}: {format_detail(detail)}")


class JobFailed(Exception):
    """A job that ended failed or cancelled (``fit`` raises it)."""

    def __init__(self, job: Job):
        self.job = job
        super().__init__(f"job {job.id} {job['status']}: {job.get('error') or ''}".rstrip(": "))


def format_detail(detail: Any) -> str:
    """FastAPI's detail is a string, or a list of validation errors."""
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return str(detail)


def raise_for(response: httpx.Response) -> None:
    """:class:`ApiError` for a non-2xx ``response``."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)
