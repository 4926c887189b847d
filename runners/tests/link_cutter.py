"""link_cutter.py COMMAND...: a rank's stdin filter that cuts its host's link mid-case.

It brings the rank's link (${CCTS_NETNS}h$RANK, the bridge side of its namespace's
veth, in the runner's namespace) up, starts COMMAND and forwards the runner's
lines to it. When rank CCTS_CUT_RANK is sent case CCTS_CUT_CASE, it sets the link
down before forwarding: the other ranks are inside the case by then and every
collective of it stalls. It exits with COMMAND's exit code, as soon as COMMAND
exits (the runner sees the rank die, not a filter waiting on stdin)."""
import json
import os
import subprocess
import sys
import threading


def link(state: str) -> None:
    subprocess.run(["ip", "link", "set", f"{os.environ['CCTS_NETNS']}h{os.environ['RANK']}", state], check=True)


def main() -> int:
    link("up")  # a session that starts after a cut finds its link again
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE)
    threading.Thread(target=lambda: os._exit(child.wait()), daemon=True).start()
    cut_here = os.environ.get("CCTS_CUT_RANK") == os.environ["RANK"]
    for line in sys.stdin.buffer:
        if cut_here and b'"run"' in line:
            message = json.loads(line)
            if message.get("type") == "run" and message["case"]["id"] == os.environ.get("CCTS_CUT_CASE"):
                link("down")
        try:
            child.stdin.write(line)
            child.stdin.flush()
        except BrokenPipeError:
            break
    child.stdin.close()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
