"""A rank group: one adapter process per rank, started with torchrun's
environment, spoken to in JSON Lines (spec/ADAPTERS.md). The group stays up
across cases of one world size; any fault kills the whole group."""
from __future__ import annotations

import json
import os
import select
import selectors
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ccts_common import schemas

from .suite import PROTOCOL_VERSION, suite_version

STDERR_TAIL_LINES = 40
MESSAGES_SCHEMA = "adapter-messages.schema.json"
# The schema definition each awaited reply must match.
REPLY_DEFINITIONS = {"hello": "adapter_hello", "result": "result", "bye": "bye"}


# Fields of a case that only the runner's judge reads: protocol 2 sends a case without them.
JUDGE_FIELDS = ("expect", "tolerance")


class RankFault(Exception):
    """A rank crashed, hung or broke the protocol. `outcome` is crash, timeout or error."""

    def __init__(self, outcome: str, rank: int, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.rank = rank


class StaleOutput(RankFault):
    """A rank wrote after its reply to a case: found before the next case was sent,
    or as a reply naming the case before while the next one ran. That case, not the
    next, is at fault."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__("error", rank, message)


class HelloRefused(RankFault):
    """A rank answered hello with an error message: it may speak an older protocol."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__("error", rank, message)


# The environment variable that marks a session's processes (spec/ADAPTERS.md).
SESSION_MARK = "CCTS_SESSION"


def kill_marked(name: str, value: str) -> None:
    """SIGKILL to every process (of this user) whose environment holds name=value;
    where there is no /proc, nothing."""
    needle = f"{name}={value}".encode()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Rank:
    rank: int
    process: subprocess.Popen
    buffer: bytes = b""
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    stderr_reader: threading.Thread | None = None

    def stderr_text(self, settle: float = 1.0) -> str:
        """The last lines of stderr; for a rank that exited, after its last words were read."""
        if self.stderr_reader is not None and self.process.poll() is not None:
            self.stderr_reader.join(settle)
        return "\n".join(self.stderr_tail)


class RankGroup:
    def __init__(self, command: str, world_size: int, backend: str = "gloo", device: str = "cpu",
                 env: dict[str, str] | None = None, protocol: int = PROTOCOL_VERSION) -> None:
        self.command = shlex.split(command)
        self.protocol = protocol
        self.world_size = world_size
        self.backend = backend
        self.device = device
        self.extra_env = env or {}
        self.ranks: list[Rank] = []
        self.hello: dict[str, Any] | None = None
        self.mark = uuid.uuid4().hex  # in every rank's environment, inherited by what it starts
        self.case_id: str | None = None  # the case a result must name
        self.previous_case_id: str | None = None

    # -- life cycle -------------------------------------------------------
    def start(self, timeout: float) -> dict[str, Any]:
        port = free_port()
        for rank in range(self.world_size):
            env = dict(os.environ)
            env.update(self.extra_env)
            env.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(self.world_size),
                        "LOCAL_WORLD_SIZE": str(self.world_size), "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port), "CCTS_PROTOCOL": str(self.protocol), SESSION_MARK: self.mark})
            try:
                process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, env=env, start_new_session=True)
            except OSError as e:
                self.close()
                raise RankFault("error", rank, f"cannot start adapter {self.command!r}: {e}") from None
            rank_state = Rank(rank, process)
            rank_state.stderr_reader = threading.Thread(target=self._drain_stderr, args=(rank_state,), daemon=True)
            rank_state.stderr_reader.start()
            self.ranks.append(rank_state)
        replies = self.exchange({"type": "hello", "protocol": self.protocol, "suite_version": suite_version(),
                                 "backend": self.backend, "device": self.device}, timeout, expect="hello")
        self.hello = replies[0]
        return self.hello

    def close(self, timeout: float = 5.0) -> None:
        """bye to every rank still alive, then kill what did not leave."""
        for r in self.ranks:
            if r.process.poll() is None:
                try:
                    r.process.stdin.write(b'{"type":"bye"}\n')
                    r.process.stdin.flush()
                    r.process.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for r in self.ranks:
            try:
                r.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """Every process of every rank: each rank's process group (also after the
        rank itself exited: its children stay in it), then whatever still carries
        this group's mark in its environment (a child that left for a group or
        session of its own)."""
        for r in self.ranks:
            try:
                os.killpg(r.process.pid, signal.SIGKILL)  # the rank leads its own session
            except (ProcessLookupError, PermissionError):
                if r.process.poll() is None:
                    r.process.kill()
        kill_marked(SESSION_MARK, self.mark)
        for r in self.ranks:
            try:
                r.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if r.stderr_reader is not None:  # it reads to the end the exit gave its pipe
                r.stderr_reader.join(1.0)
            for stream in (r.process.stdin, r.process.stdout, r.process.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        self.ranks = []

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.ranks]

    # -- messages ---------------------------------------------------------
    def run_case(self, case: dict[str, Any], fixtures: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        if self.protocol >= 2:  # the adapter executes; it never sees what is expected
            case = {k: v for k, v in case.items() if k not in JUDGE_FIELDS}
        self.check_quiet()
        messages = [{"type": "run", "case": case, "fixtures": fixtures, "world_size": self.world_size,
                     "rank": r.rank, "backend": self.backend, "device": self.device} for r in self.ranks]
        self.previous_case_id, self.case_id = self.case_id, case.get("id")
        return self.exchange(messages, timeout, expect="result")

    def check_quiet(self) -> None:
        """StaleOutput if a rank wrote anything since its last reply."""
        with selectors.DefaultSelector() as selector:
            for r in self.ranks:
                selector.register(r.process.stdout, selectors.EVENT_READ, r)
            for key, _ in selector.select(0):
                r = key.data
                chunk = os.read(r.process.stdout.fileno(), 1 << 20)
                if chunk.strip():
                    raise StaleOutput(r.rank, f"rank {r.rank} wrote after its reply to case {self.case_id}: "
                                              f"{chunk[:200]!r} (one reply per message, spec/ADAPTERS.md)")

    def exchange(self, message: Any, timeout: float, expect: str) -> list[dict[str, Any]]:
        """Sends a message to every rank (one per rank if a list) and reads one reply from
        each, all within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for r in self.ranks:
            payload = message[r.rank] if isinstance(message, list) else message
            self._send(r, (json.dumps(payload) + "\n").encode(), deadline, timeout)
        replies: dict[int, dict[str, Any]] = {}
        with selectors.DefaultSelector() as selector:
            for r in self.ranks:
                selector.register(r.process.stdout, selectors.EVENT_READ, r)
            while len(replies) < len(self.ranks):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [r.rank for r in self.ranks if r.rank not in replies]
                    raise RankFault("timeout", missing[0],
                                    f"no reply from rank(s) {missing} within {timeout:g} s")
                ready = selector.select(min(left, 0.5))
                if not ready:
                    self._check_exits(replies)
                for key, _ in ready:
                    r: Rank = key.data
                    chunk = os.read(r.process.stdout.fileno(), 1 << 20)
                    if not chunk:
                        selector.unregister(r.process.stdout)
                        if r.rank not in replies:
                            raise self._fault_for_exit(r)
                        continue
                    r.buffer += chunk
                    while b"\n" in r.buffer and r.rank not in replies:
                        line, r.buffer = r.buffer.split(b"\n", 1)
                        if line.strip():
                            replies[r.rank] = self._parse(r, line, expect)
                    if r.rank in replies and r.buffer.strip():
                        raise RankFault("error", r.rank, f"rank {r.rank} sent more than one reply to one '{expect}' "
                                                         f"message: {r.buffer[:200]!r}")
        return [replies[r.rank] for r in self.ranks]

    def _check_exits(self, replies: dict[int, dict[str, Any]]) -> None:
        """A rank that exited without a reply is a fault now, even when its stdout
        stays open (a child it started holds the pipe: no end of file comes)."""
        for r in self.ranks:
            if r.rank in replies or r.process.poll() is None:
                continue
            readable, _, _ = select.select([r.process.stdout], [], [], 0)
            if not readable:  # what it wrote before exiting is read first
                raise self._fault_for_exit(r)

    def _send(self, r: Rank, data: bytes, deadline: float, timeout: float) -> None:
        """Writes to a rank's stdin without blocking past the deadline: a rank that
        stopped reading (its pipe full) is a timeout, not a runner stuck for ever."""
        fd = r.process.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RankFault("timeout", r.rank, f"rank {r.rank} did not read its input within {timeout:g} s")
            _, writable, _ = select.select([], [fd], [], min(left, 0.5))
            if not writable:
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError:
                raise self._fault_for_exit(r) from None

    def _parse(self, r: Rank, line: bytes, expect: str) -> dict[str, Any]:
        try:
            reply = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RankFault("error", r.rank, f"rank {r.rank} wrote a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise RankFault("error", r.rank, f"rank {r.rank} wrote JSON that is not an object: {line[:200]!r}")
        if reply.get("type") == "error":
            if expect == "hello":
                raise HelloRefused(r.rank, f"rank {r.rank} refused hello (protocol {self.protocol}): "
                                           f"{reply.get('message')}")
            raise RankFault("error", r.rank, f"rank {r.rank} reported a protocol error: {reply.get('message')}")
        if reply.get("type") != expect:
            raise RankFault("error", r.rank, f"rank {r.rank} answered '{reply.get('type')}' where '{expect}' was due")
        if expect == "hello" and reply.get("protocol") != self.protocol:
            raise RankFault("error", r.rank, f"rank {r.rank} speaks protocol {reply.get('protocol')!r}; "
                                             f"it was offered {self.protocol} (spec/ADAPTERS.md)")
        problems = schemas.problems(reply, MESSAGES_SCHEMA, REPLY_DEFINITIONS[expect], limit=3)
        if problems:
            raise RankFault("error", r.rank, f"rank {r.rank} sent an ill-formed '{expect}' "
                                             f"({MESSAGES_SCHEMA}): " + "; ".join(problems))
        if expect == "result" and reply["case"] == self.previous_case_id != self.case_id:
            raise StaleOutput(r.rank, f"rank {r.rank} sent a second reply to case {reply['case']!r} while case "
                                      f"{self.case_id!r} ran (one reply per message, spec/ADAPTERS.md)")
        if expect == "result" and (reply["case"], reply["rank"]) != (self.case_id, r.rank):
            raise RankFault("error", r.rank, f"rank {r.rank} answered case {reply['case']!r} as rank {reply['rank']}; "
                                             f"it was sent case {self.case_id!r} as rank {r.rank}")
        if expect == "hello" and (reply["rank"], reply["world_size"]) != (r.rank, self.world_size):
            raise RankFault("error", r.rank, f"rank {r.rank} answered hello as rank {reply['rank']} of "
                                             f"{reply['world_size']}; it was started as rank {r.rank} of "
                                             f"{self.world_size} (RANK, WORLD_SIZE)")
        return reply

    def _fault_for_exit(self, r: Rank) -> RankFault:
        try:
            code = r.process.wait(2)
        except subprocess.TimeoutExpired:
            return RankFault("error", r.rank, f"rank {r.rank} closed its stdout")
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return RankFault("crash", r.rank, f"rank {r.rank} died ({how})")

    def stderr_tail(self, rank: int) -> str:
        for r in self.ranks:
            if r.rank == rank:
                return r.stderr_text()
        return ""

    @staticmethod
    def _drain_stderr(r: Rank) -> None:
        for raw in iter(r.process.stderr.readline, b""):
            r.stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
