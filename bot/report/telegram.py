"""``bot telegram``: the bot answers commands in its Telegram chat.

It long-polls ``getUpdates`` (https://core.telegram.org/bots/api#getupdates)
from the offset stored in the database (bot/storage/telegram.py) and answers
each command with ``sendMessage``. Only TELEGRAM_CHAT_ID is obeyed: a message
from any other chat is logged as ``telegram.ignored`` with its chat id and
command word, never its text, and gets no answer.

**Each update is handled at most once, none is lost.** The offset after an
update is stored as soon as it is handled, so a restart asks from there.
Between handling and storing the process can die, though: so a command that
changes something (a pause, a resume, a confirmed sell,
:func:`bot.report.commands.has_side_effect`) has its offset stored *before* it
is handled; should the process die in between, that one command is dropped,
never done twice (its sender sees no answer and can send it again). A command
that only reads is handled, answered, then stored: a death in between
answers it twice, which harms nothing. A confirmed sell also places its order
under an identifier made from the update, which the order life cycle never
places twice.

The token is in every request's URL: it is registered for redaction, and no
error carries the URL.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import requests

from bot.config import Settings
from bot.errors import TelegramError, TelegramUnavailable, TemporaryError
from bot.logs import event, redact, register_secret
from bot.report.commands import Request, command_word, has_side_effect
from bot.storage import Database
from bot.storage import telegram as offset_store

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
POLL_SECONDS = 25  # Telegram holds a getUpdates this long when nothing comes
CONNECT_TIMEOUT = 5.0
MAX_TEXT = 4096  # Telegram's limit for one message
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


class TelegramApi:
    """getUpdates and sendMessage on one bot; never puts the token in an error."""

    def __init__(self, token: str, *, base: str = TELEGRAM_API,
                 session: requests.Session | None = None) -> None:
        self._url = f"{base.rstrip('/')}/bot{token}/"
        register_secret(token, self._url)
        self.bot_id = token.split(":", 1)[0] or "bot"
        self.session = session or requests.Session()

    def __repr__(self) -> str:  # the URL holds the token
        return f"TelegramApi(bot {self.bot_id})"

    def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"timeout": timeout, "allowed_updates": '["message"]'}
        if offset is not None:
            params["offset"] = offset
        result = self._call("getUpdates", params, read_timeout=timeout + 10.0)
        return list(result) if isinstance(result, list) else []

    def send(self, chat_id: str, text: str) -> None:
        self._call("sendMessage", {"chat_id": chat_id, "text": text[:MAX_TEXT],
                                   "disable_web_page_preview": True}, read_timeout=10.0)

    def _call(self, method: str, params: dict[str, Any], *, read_timeout: float) -> Any:
        try:
            response = self.session.post(self._url + method, json=params,
                                         timeout=(CONNECT_TIMEOUT, read_timeout),
                                         allow_redirects=False)
        except requests.RequestException as exc:
            # str(exc) names the URL, token and all: only its type and redacted words.
            raise TelegramUnavailable(f"telegram {method}: no answer: {type(exc).__name__}: "
                                      f"{redact(str(exc))}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 429 or response.status_code >= 500:
            raise TelegramUnavailable(f"telegram {method} -> {response.status_code}: "
                                      f"{redact(str(body.get('description', '')))}")
        if response.status_code != 200 or not body.get("ok"):
            raise TelegramError(f"telegram {method} -> {response.status_code}: "
                                f"{redact(str(body.get('description', 'refused')))}")
        return body.get("result")


@dataclass(frozen=True)
class Message:
    """The parts of an update the poller looks at."""

    update_id: int
    chat_id: str
    text: str
    by: str


def message_of(update: dict[str, Any]) -> Message | None:
    """The text message an update carries, or None (edits, stickers, joins)."""
    msg = update.get("message")
    if not isinstance(msg, dict) or not isinstance(msg.get("text"), str):
        return None
    sender = msg.get("from") or {}
    who = sender.get("username") or sender.get("id") or "unknown"
    return Message(int(update["update_id"]), str((msg.get("chat") or {}).get("id", "")),
                   msg["text"], f"telegram:{who}")


class Poller:
    """Reads updates from the stored offset and answers the configured chat."""

    def __init__(self, settings: Settings, db: Database, api: TelegramApi,
                 handle: Callable[[Request], str], *,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.settings, self.db, self.api, self.handle = settings, db, api, handle
        self.chat_id = settings.telegram_chat_id.strip()
        self.sleep = sleep or _sleep
        self.busy = False  # handling an update: a stop signal waits for it
        self.stop_requested = False

    def poll_once(self, timeout: int = POLL_SECONDS) -> int:
        """One getUpdates and every update it brings; how many were handled."""
        offset = offset_store.next_update(self.db, self.api.bot_id)
        updates = self.api.get_updates(offset, timeout)
        for update in updates:
            if self.stop_requested:
                break  # not stored: the next start asks for it again
            self.busy = True
            try:
                self._one(update)
            finally:
                self.busy = False
        return len(updates)

    def _one(self, update: dict[str, Any]) -> None:
        next_offset = int(update["update_id"]) + 1
        msg = message_of(update)
        if msg is None:
            self._store(next_offset)
            return
        word = command_word(msg.text)
        if msg.chat_id != self.chat_id:
            event(log, "telegram.ignored", level=logging.WARNING, chat=msg.chat_id,
                  command=word or "-", update=msg.update_id,
                  detail="not TELEGRAM_CHAT_ID: not answered")
            self._store(next_offset)
            return
        if word is None:  # chatter in the chat: nothing to do
            self._store(next_offset)
            return
        first = has_side_effect(msg.text)
        if first:
            self._store(next_offset)
        reply = self._answer(msg, word)
        self._reply(msg, word, reply)
        if not first:
            self._store(next_offset)

    def _answer(self, msg: Message, word: str) -> str:
        event(log, "telegram.command", command=word, update=msg.update_id, by=msg.by)
        try:
            return self.handle(Request(msg.text, msg.update_id, msg.by))
        except Exception as exc:  # one failing command must not stop the others
            event(log, "telegram.command_failed", level=logging.ERROR, command=word,
                  update=msg.update_id, error=type(exc).__name__, detail=redact(str(exc)))
            return f"/{word} failed: {type(exc).__name__}: {redact(str(exc))[:300]}"

    def _reply(self, msg: Message, word: str, text: str) -> None:
        try:
            self.api.send(self.chat_id, text)
        except TelegramError as exc:
            event(log, "telegram.reply_failed", level=logging.WARNING, command=word,
                  update=msg.update_id, error=type(exc).__name__, detail=str(exc))

    def _store(self, offset: int) -> None:
        offset_store.store_next_update(self.db, self.api.bot_id, offset)

    def run(self) -> None:
        """Poll until :attr:`stop_requested`; a Telegram that does not answer
        is waited for (1 s, 2 s, ... at most 30 s). A refusal (a wrong token,
        another poller of this bot) raises :class:`TelegramError`."""
        event(log, "telegram.started", bot=self.api.bot_id, chat=self.chat_id,
              offset=offset_store.next_update(self.db, self.api.bot_id))
        failures = 0
        while not self.stop_requested:
            try:
                self.poll_once()
                failures = 0
            except TemporaryError as exc:  # Telegram or the database, for a while
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                event(log, "telegram.poll_failed", level=logging.WARNING,
                      error=type(exc).__name__, detail=str(exc), retry_in_s=delay)
                self.sleep(delay)


def _sleep(seconds: float) -> None:
    import time
    time.sleep(seconds)


class _Interrupted(BaseException):
    """A stop signal while the poller waits on Telegram (BaseException: no
    ``except Exception`` on the way may swallow it)."""


def serve(poller: Poller) -> int:
    """Run ``poller`` until SIGTERM or SIGINT; exit code 0. A signal during a
    long poll ends the wait at once (nothing was handled yet); one while an
    update is handled lets that update finish and be stored first."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        poller.stop_requested = True
        if not poller.busy:
            raise _Interrupted

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    reason = "signal"
    try:
        poller.run()
    except _Interrupted:
        pass
    except TelegramError as exc:
        reason = str(exc)
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        event(log, "telegram.stopped", bot=poller.api.bot_id, reason=reason)
    return 0


def idle() -> int:
    """No TELEGRAM_BOT_TOKEN: say so once, then wait for SIGTERM or SIGINT
    (a container that exited would be restarted over and over)."""
    event(log, "telegram.disabled", level=logging.WARNING,
          detail="TELEGRAM_BOT_TOKEN is empty: no commands are read")
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    signal.sigwait(stops)
    return 0
