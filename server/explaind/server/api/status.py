"""Turns domain errors into gRPC statuses with a google.rpc.BadRequest naming the field."""
from __future__ import annotations

import functools
import logging

import grpc
from google.rpc import error_details_pb2, status_pb2

from ..errors import ExplaindError

log = logging.getLogger(__name__)
DETAILS_KEY = "grpc-status-details-bin"


# Messages often quote the request; a client's metadata limit (8 KiB by default) must
# not turn a long quote into a lost status.
MAX_MESSAGE_CHARS = 1024


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "... (cut)"


def status_of(error: ExplaindError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.code.value[0], message=_bounded(str(error)))
    if error.field:
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_bounded(error.field),
                                                        description=_bounded(error.message))]))
    return status


async def abort(context: grpc.aio.ServicerContext, error: ExplaindError):
    status = status_of(error)
    # Added to, not replacing, what is set already (the interceptors' x-request-id).
    kept = tuple((k, v) for k, v in (context.trailing_metadata() or ()) if k != DETAILS_KEY)
    context.set_trailing_metadata(kept + ((DETAILS_KEY, status.SerializeToString()),))
    await context.abort(error.code, status.message)


def translate_errors(method):
    """Servicer methods raise ExplaindError; the caller sees its status and field."""
    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except ExplaindError as e:
            await abort(context, e)
        except grpc.aio.AbortError:
            raise                      # a status already set by context.abort
        except Exception as e:  # noqa: BLE001 - a bug must still answer a status that says what happened
            log.exception("unexpected error in %s", method.__name__)
            await abort(context, ExplaindError(f"{type(e).__name__}: {e} (a server bug; see the server log)"))
    return wrapper
