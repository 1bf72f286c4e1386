"""Stripe's error shapes: `{"error": {"type", "code", "message", "param"}}` with a 4xx/5xx."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error the sandbox answers as Stripe would."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """Return the JSON body Stripe sends with this error."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def invalid(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    """Build an invalid_request_error."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    """Build Stripe's 404 for an unknown object id."""
    return invalid(
        f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=404
    )


def unexpected_state(message: str) -> StripeError:
    """Build the 400 for an action not allowed in the object's current status."""
    return invalid(message, code="payment_intent_unexpected_state")
