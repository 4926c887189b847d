"""A negative adapter: runs a real adapter and corrupts what it reports, one
mutation at a time, so the self-tests can prove every case fails against a
wrong implementation.

usage: mutating_adapter.py MUTATION -- ADAPTER COMMAND...
"""
import base64
import json
import struct
import subprocess
import sys
import threading

MUTATIONS = ("skew_rank", "shift_values", "zero_tensors", "reverse_strings", "change_json", "drop_errors")


def mutate_tensor(obs: dict, mutation: str, rank: int, salt: int) -> dict:
    if obs.get("dtype") != "float32":
        return obs
    raw = base64.b64decode(obs["data"])
    n = len(raw) // 4
    values = list(struct.unpack(f"<{n}f", raw))
    if mutation == "skew_rank" and rank > 0:
        values = [v + 1.0 for v in values]
    elif mutation == "shift_values" and values:
        values[0] += 0.25 * (1 + salt % 7)
    elif mutation == "zero_tensors":
        values = [0.0] * n
    return {**obs, "data": base64.b64encode(struct.pack(f"<{n}f", *values)).decode()}


def mutate(obs: dict, mutation: str, rank: int, salt: int) -> dict:
    kind = obs.get("kind")
    if kind == "tensor":
        return mutate_tensor(obs, mutation, rank, salt)
    if kind == "named_tensors":
        return {**obs, "items": [[n, mutate_tensor(t, mutation, rank, salt + i)] for i, (n, t) in enumerate(obs["items"])]}
    if kind == "strings" and mutation == "reverse_strings":
        return {**obs, "items": list(reversed(obs["items"])) + ([] if len(obs["items"]) > 1 else ["extra"])}
    if kind == "json" and mutation == "change_json":
        return {**obs, "value": {"changed": obs.get("value")}}
    if kind == "error" and mutation == "drop_errors":
        return {**obs, "error": None}
    return obs


def main() -> int:
    mutation = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1:]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def forward_input() -> None:
        for line in sys.stdin:
            child.stdin.write(line)
            child.stdin.flush()
        child.stdin.close()

    threading.Thread(target=forward_input, daemon=True).start()
    for line in child.stdout:
        message = json.loads(line)
        if message.get("type") == "result":
            rank = message["rank"]
            message["observations"] = {name: mutate(obs, mutation, rank, sum(map(ord, name)))
                                       for name, obs in message["observations"].items()}
            if mutation == "drop_errors":
                message["error"] = None
        print(json.dumps(message), flush=True)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
