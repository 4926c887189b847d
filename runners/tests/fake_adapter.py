"""A scripted adapter for the runner's self-tests. It answers from
FAKE_ANSWERS (JSON: {case id: {"observations": ..., "error": ...}}) and
misbehaves on purpose when a case id contains crash, hang, garbage, spawn
(a child process in a session of its own, its pid added to FAKE_PIDS),
wrong_case or wrong_rank (a reply naming another), twice (two replies) or
late_dup (a second reply written when the next case arrives), on rank
FAKE_BAD_RANK (default 0) where it says so; FAKE_DEAF=1 makes it stop
reading its stdin after hello, FAKE_MUTE=1 never answer hello.
FAKE_CAPABILITIES lists its capabilities (comma separated); FAKE_PROTOCOLS the
protocol versions it speaks (default 2; offered another, it refuses hello with
an error message and exits, as spec/ADAPTERS.md says); FAKE_PROTOCOL
overrides the protocol version its hello names, FAKE_VERSION its version; FAKE_RECEIVED=PATH logs
every message it receives to PATH.<rank>; FAKE_PIDS=PATH appends each rank's
process id to PATH; FAKE_PORT_TAKEN=PATH makes rank 0's first start fail as a
rendezvous whose port another process took (PATH marks that it happened)."""
import json
import os
import subprocess
import sys
import time


def main() -> int:
    answers = json.loads(open(os.environ["FAKE_ANSWERS"]).read()) if os.environ.get("FAKE_ANSWERS") else {}
    rank = int(os.environ["RANK"])
    received = os.environ.get("FAKE_RECEIVED")
    if os.environ.get("FAKE_PIDS"):  # so a test can check that no rank outlives the run
        with open(os.environ["FAKE_PIDS"], "a", encoding="utf-8") as pids:
            pids.write(f"{os.getpid()}\n")
    taken = os.environ.get("FAKE_PORT_TAKEN")
    if taken and rank == 0 and not os.path.exists(taken):
        open(taken, "w").close()
        print("DistNetworkError: The server socket has failed to listen on any local network address. "
              "port: 1, code: -98, name: EADDRINUSE, message: address already in use", file=sys.stderr, flush=True)
        return 1
    late_duplicate = None
    for line in sys.stdin:
        if received:  # what the runner sent, one file per rank
            with open(f"{received}.{rank}", "a", encoding="utf-8") as log:
                log.write(line)
        message = json.loads(line)
        if message["type"] == "hello" and os.environ.get("FAKE_MUTE"):  # never says hello
            time.sleep(3600)
        if message["type"] == "hello":
            speaks = [int(p) for p in os.environ.get("FAKE_PROTOCOLS", "2").split(",")]
            if message.get("protocol") not in speaks:
                print(json.dumps({"type": "error", "message": f"protocol version {message.get('protocol')} is not "
                                                             f"supported; this adapter speaks {speaks}"}), flush=True)
                return 2
            caps = [c for c in os.environ.get("FAKE_CAPABILITIES", "fixtures").split(",") if c]
            reply = {"type": "hello", "protocol": int(os.environ.get("FAKE_PROTOCOL", message["protocol"])), "name": "fake",
                     "version": os.environ.get("FAKE_VERSION", "0"), "capabilities": caps, "backends": ["gloo"], "devices": ["cpu"], "build": {},
                     "rank": rank,
                     "world_size": int(os.environ["WORLD_SIZE"])}
        elif message["type"] == "run":
            case_id = message["case"]["id"]
            print(f"running {case_id}", file=sys.stderr, flush=True)
            if "spawn" in case_id:  # a child in a session of its own, out of the rank's process group
                child = subprocess.Popen(["sleep", "3600"], start_new_session=True)
                if os.environ.get("FAKE_PIDS"):
                    with open(os.environ["FAKE_PIDS"], "a", encoding="utf-8") as pids:
                        pids.write(f"{child.pid}\n")
            if "crash" in case_id and rank == int(os.environ.get("FAKE_BAD_RANK", "0")):
                os._exit(3)
            if "hang" in case_id:
                time.sleep(3600)
            if "garbage" in case_id:
                print("this is not json", flush=True)
                continue
            answer = answers.get(case_id, {})
            per_rank = answer.get(str(rank), answer)
            reply = {"type": "result", "case": case_id, "rank": rank,
                     "observations": per_rank.get("observations", {}), "error": per_rank.get("error"),
                     "duration_s": 0.0}
            if late_duplicate is not None:  # the case before's second reply, written late
                print(json.dumps(late_duplicate), flush=True)
                late_duplicate = None
            bad = rank == int(os.environ.get("FAKE_BAD_RANK", "0"))
            if "wrong_case" in case_id and bad:
                reply["case"] = "t.some_other_case"
            if "wrong_rank" in case_id and bad:
                reply["rank"] = rank + 1
            if "twice" in case_id and bad:
                print(json.dumps(reply), flush=True)
            if "late_dup" in case_id and bad:
                late_duplicate = dict(reply)
        else:
            print(json.dumps({"type": "bye"}), flush=True)
            return 0
        print(json.dumps(reply), flush=True)
        if os.environ.get("FAKE_DEAF") and message["type"] == "hello":  # stops reading: its stdin fills up
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
