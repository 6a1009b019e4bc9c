"""A local stand-in for Telegram's Bot API: ``getUpdates`` (long polling with
``offset``, ``timeout`` and ``limit``) and ``sendMessage``, under
``/bot<token>/``, as https://core.telegram.org/bots/api describes them.

Tests :meth:`FakeTelegram.push` messages as a user would type them and read
the bot's answers from :attr:`FakeTelegram.sent` (or wait for them with
:meth:`FakeTelegram.wait_sent`, on a condition, never a sleep). Like Telegram,
a ``getUpdates`` with an ``offset`` forgets every update below it, and one with
a ``timeout`` holds the request until an update arrives or the time is up.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HOLD = 5.0  # seconds a long poll is held at most here (tests stay quick)


@dataclass(frozen=True)
class Sent:
    chat_id: str
    text: str


class FakeTelegram:
    """The fake server; ``with FakeTelegram(token) as tg:`` serves on a free port."""

    def __init__(self, token: str = "123456:fake-token") -> None:  # noqa: S107 - a fake's
        self.token = token
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.sent: list[Sent] = []
        self.polls: list[dict[str, int]] = []  # each getUpdates' offset and timeout
        self._next_id = 1000
        self._message_id = 1
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for one, at every test's end.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="faketelegram")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeTelegram:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the test's side ----------------------------------------------------------

    def push(self, text: str, *, chat_id: int | str = 42, user: str = "alice",
             user_id: int = 7) -> int:
        """A message the user sends the bot; its update_id."""
        with self._cond:
            update_id = self._next_id
            self._next_id += 1
            self._message_id += 1
            self.updates.append({"update_id": update_id, "message": {
                "message_id": self._message_id, "date": 1_767_571_200,
                "chat": {"id": int(chat_id), "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": user.title(),
                         "username": user},
                "text": text}})
            self._cond.notify_all()
        return update_id

    def push_other(self, update: dict[str, Any]) -> int:
        """An update that is not a text message (an edit, a sticker, ...)."""
        with self._cond:
            update_id = self._next_id
            self._next_id += 1
            self.updates.append({"update_id": update_id, **update})
            self._cond.notify_all()
        return update_id

    def wait_sent(self, count: int, timeout: float = 5.0) -> list[Sent]:
        """Wait until the bot has sent ``count`` messages in all; the messages."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.sent) >= count, timeout)
            return list(self.sent)

    def texts(self) -> list[str]:
        with self._cond:
            return [m.text for m in self.sent]

    # --- the API's side -------------------------------------------------------------

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        timeout = min(float(params.get("timeout", 0) or 0), MAX_HOLD)
        limit = int(params.get("limit", 100) or 100)
        with self._cond:
            self.polls.append({"offset": offset, "timeout": int(timeout)})
            if offset:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self._cond.wait_for(lambda: bool(self.updates), timeout)
            return self.updates[:limit]

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self.sent.append(Sent(str(params["chat_id"]), str(params["text"])))
            self._message_id += 1
            self._cond.notify_all()
            return {"message_id": self._message_id, "chat": {"id": params["chat_id"]},
                    "text": params["text"]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet in test output
                return

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _params(self) -> dict[str, Any]:
                split = urlsplit(self.path)
                params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if body and "json" in (self.headers.get("Content-Type") or ""):
                    params.update(json.loads(body))
                elif body:
                    params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
                return params

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                prefix = f"/bot{fake.token}/"
                if not path.startswith(prefix):
                    self._answer(401, {"ok": False, "error_code": 401,
                                       "description": "Unauthorized"})
                    return
                method, params = path[len(prefix):], self._params()
                if method == "getUpdates":
                    self._answer(200, {"ok": True, "result": fake._get_updates(params)})
                elif method == "sendMessage":
                    if not params.get("chat_id") or not params.get("text"):
                        self._answer(400, {"ok": False, "error_code": 400,
                                           "description": "Bad Request: message text is empty"})
                        return
                    self._answer(200, {"ok": True, "result": fake._send_message(params)})
                else:
                    self._answer(404, {"ok": False, "error_code": 404,
                                       "description": "Not Found"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
