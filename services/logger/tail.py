"""`predmesh logs tail`: consume a predictions topic and print decoded events as JSON lines.

    python -m services.logger.tail --bootstrap 127.0.0.1:9092 --topic predictions --from-beginning

Each line is the PredictionEvent as JSON plus `_topic`, `_partition`, `_offset`, `_key`
and `_headers`. Stops after `--max-messages`, after `--idle-timeout-s` without
messages, or on Ctrl-C. Uses a throwaway consumer group and never commits offsets.
Consumer timeouts are the production ones (`predmesh.common.kafka`); `--consumer-property
KEY=VALUE` (repeatable) or the `overrides` argument change them (`predmesh logs tail` passes
the local dev timeouts).
Counts messages; never trusts watermarks (tansu reports them wrong).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from predmesh.common.kafka import consumer_config
from predmesh.v1.events_pb2 import PredictionEvent


def decode(message: Any) -> dict[str, Any]:
    """A consumed Kafka message -> JSON-ready dict (the event plus Kafka coordinates)."""
    try:
        event = PredictionEvent.FromString(message.value() or b"")
        out: dict[str, Any] = json_format.MessageToDict(event, preserving_proto_field_name=True)
    except DecodeError:
        out = {"_undecodable": (message.value() or b"").hex()}
    key = message.key()
    out.update(
        _topic=message.topic(),
        _partition=message.partition(),
        _offset=message.offset(),
        _key=key.decode(errors="replace") if key is not None else None,
        _headers={k: (v.decode(errors="replace") if v is not None else None) for k, v in message.headers() or []},
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="predmesh logs tail", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("PREDMESH_LOGGER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $PREDMESH_LOGGER_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument("--topic", default="predictions", help="topic to read (default: predictions)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N messages (0 = no limit)")
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=0.0,
        help="stop after this many seconds without messages (0 = never)",
    )
    parser.add_argument(
        "--consumer-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka consumer property (repeatable), e.g. session.timeout.ms=6000",
    )
    parser.add_argument(
        "--connect-timeout-s",
        type=float,
        default=3.0,
        help="give up (exit 1) when no broker answers within this many seconds (default 3)",
    )
    return parser.parse_args(argv)


_QUIET = logging.getLogger("services.logger.tail.rdkafka")  # librdkafka's reconnect chatter: debug only


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, overrides: Mapping[str, Any] | None = None
) -> int:
    """Entry point; returns the exit code (0 ok, 1 no broker / consumer error, 2 bad usage, 130 interrupted).

    `overrides`: consumer properties applied over the production ones (before `--consumer-property`).
    """
    from confluent_kafka import Consumer, KafkaError

    args = parse_args(argv)
    stream = out or sys.stdout
    extra: dict[str, Any] = dict(overrides or {})
    for item in args.consumer_property:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --consumer-property expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra[key] = value
    config = consumer_config(
        args.bootstrap, f"predmesh-tail-{uuid.uuid4().hex[:8]}", from_beginning=args.from_beginning, overrides=extra
    )
    consumer = Consumer({**config, "logger": _QUIET})
    try:
        consumer.list_topics(timeout=args.connect_timeout_s)  # fails fast instead of spinning on reconnects
    except Exception:
        consumer.close()
        print(
            f"error: no Kafka broker answers at {args.bootstrap} within {args.connect_timeout_s:.0f}s "
            "(is `predmesh up` running?)",
            file=sys.stderr,
        )
        return 1
    consumer.subscribe([args.topic])
    count = 0
    last = time.monotonic()
    try:
        while not args.max_messages or count < args.max_messages:
            msg = consumer.poll(0.2)
            if msg is None:
                if args.idle_timeout_s and time.monotonic() - last > args.idle_timeout_s:
                    break
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF or err.retriable():
                    continue
                print(f"consumer error: {err}", file=sys.stderr)
                return 1
            stream.write(json.dumps(decode(msg), sort_keys=True) + "\n")
            stream.flush()
            count += 1
            last = time.monotonic()
    except KeyboardInterrupt:
        return 130
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
