"""Wire formats of the durable async path (Kafka records and Redis values), one place.

- `async-requests`: key = request id, value = PredictAsyncRequest (the request with its priority;
  callback_target as the caller wrote it), headers = the pinned callback address checked at
  submit time (`pm-target`: "host|port|tls|address"), the owner key name and the acceptance time.
- `async-results` and the stored result: CallbackDelivery (response, or error code + message).
- `async-dead-letters`: CallbackDelivery, headers = the target, attempts and the reason.
Pure functions.
"""

from __future__ import annotations

from predmesh.common.callback_policy import CallbackTarget
from predmesh.common.errors import InvalidArgument
from predmesh.v1 import prediction_pb2
from services.gateway.core.async_ports import AsyncJob, AsyncResult
from services.gateway.core.priority import Priority
from services.gateway.transport.converters import predict_input, predict_output, predict_request, predict_response

Headers = list[tuple[str, bytes]]


def target_to_text(target: CallbackTarget) -> str:
    return f"{target.host}|{target.port}|{int(target.tls)}|{target.address}"


def target_from_text(text: str) -> CallbackTarget:
    host, port, tls, address = text.split("|", 3)
    return CallbackTarget(host=host, port=int(port), tls=tls == "1", address=address)


def encode_job(job: AsyncJob) -> tuple[bytes, Headers]:
    value = prediction_pb2.PredictAsyncRequest(request=predict_request(job.item, int(job.priority)))
    headers: Headers = [("pm-owner", job.owner.encode()), ("pm-accepted-ms", str(job.accepted_ms).encode())]
    if job.target is not None:
        headers.append(("pm-target", target_to_text(job.target).encode()))
    return value.SerializeToString(), headers


def decode_job(value: bytes, headers: Headers | None) -> AsyncJob:
    """The job of one record; InvalidArgument when it is not one (the consumer skips it)."""
    try:
        msg = prediction_pb2.PredictAsyncRequest.FromString(value)
        meta = {k: v.decode() for k, v in headers or () if v is not None}
        target = target_from_text(meta["pm-target"]) if "pm-target" in meta else None
        priority = Priority(msg.request.priority) if msg.request.priority else Priority.ASYNC
        return AsyncJob(
            item=predict_input(msg.request),
            target=target,
            owner=meta.get("pm-owner", ""),
            accepted_ms=int(meta.get("pm-accepted-ms", "0")),
            priority=priority,
        )
    except (ValueError, KeyError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"malformed async request record: {err}") from err


def encode_result(result: AsyncResult) -> bytes:
    delivery = prediction_pb2.CallbackDelivery(request_id=result.request_id)
    if result.output is not None:
        delivery.response.CopyFrom(predict_response(result.output))
    delivery.error_code = result.error_code
    delivery.error_message = result.error_message
    return delivery.SerializeToString()


def decode_result(value: bytes) -> AsyncResult:
    d = prediction_pb2.CallbackDelivery.FromString(value)
    return AsyncResult(
        request_id=d.request_id,
        output=predict_output(d.response) if d.HasField("response") else None,
        error_code=d.error_code,
        error_message=d.error_message,
    )
