"""A scripted adapter for the runner's self-tests. It answers from
FAKE_ANSWERS (JSON: {case id: {"observations": ..., "error": ...}}) and
misbehaves on purpose when a case id contains crash, hang or garbage.
FAKE_CAPABILITIES lists its capabilities (comma separated)."""
import json
import os
import sys
import time


def main() -> int:
    answers = json.loads(open(os.environ["FAKE_ANSWERS"]).read()) if os.environ.get("FAKE_ANSWERS") else {}
    rank = int(os.environ["RANK"])
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "hello":
            caps = [c for c in os.environ.get("FAKE_CAPABILITIES", "fixtures").split(",") if c]
            reply = {"type": "hello", "protocol": 1, "name": "fake", "version": "0", "capabilities": caps,
                     "backends": ["gloo"], "devices": ["cpu"], "build": {}, "rank": rank,
                     "world_size": int(os.environ["WORLD_SIZE"])}
        elif message["type"] == "run":
            case_id = message["case"]["id"]
            print(f"running {case_id}", file=sys.stderr, flush=True)
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
        else:
            print(json.dumps({"type": "bye"}), flush=True)
            return 0
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
