"""A loopback HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

Each POST /v1/messages takes the next scripted reply: (status, body or None, delay seconds). The
requests it received are kept (headers and JSON) so tests can check what the SDK sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tool_reply(tool_input: dict[str, Any], name: str = "propose_step_budget") -> dict[str, Any]:
    return {
        "id": "msg_test_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "tool_use", "id": "toolu_test_1", "name": name, "input": tool_input}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 40},
    }


def text_reply(text: str) -> dict[str, Any]:
    reply = tool_reply({})
    reply["content"] = [{"type": "text", "text": text}]
    reply["stop_reason"] = "end_turn"
    return reply


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@dataclass
class Script:
    replies: list[tuple[int, Any, float]] = field(default_factory=list)
    default: tuple[int, Any, float] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, Any, float]:
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
        if self.default is None:
            return 500, error_body("api_error", "script exhausted"), 0.0
        return self.default


class FakeMessagesAPI:
    def __init__(self) -> None:
        self.script = Script()
        script = self.script

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with script.lock:
                    script.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"{}")}
                    )
                status, payload, delay = script.next()
                if delay:
                    time.sleep(delay)
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    if status == 529 or status >= 500:
                        self.send_header("retry-after-ms", "10")
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeMessagesAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
