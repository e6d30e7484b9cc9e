"""Cold start of each Lambda binary, measured under a minimal Lambda runtime API emulator.

For each function: start its release binary as Lambda would (AWS_LAMBDA_RUNTIME_API pointing
here), time process start -> first `GET /invocation/next` (init: config, clients, the DynamoDB
warm-up read) and -> the first invocation's response (init + first request). The event is the
function's sample from events/. Then WARM more invocations of the same event (env COLDSTART_WARM,
default 20) time the warm duration (event handed out -> response). The process's CPU time and
peak RSS (wait4) cover init and every invocation. Prints medians over a few runs. Needs the DynamoDB endpoint and
credentials in the environment (scripts/bench starts moto).

usage: coldstart.py <binary dir> <runs> <function>=<event file> ...
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

RUNTIME = "/2018-06-01/runtime"


def cpu_ms(pid):
    """CPU time of a process so far, every thread's: the scheduler's nanosecond count
    (/proc/<pid>/task/<tid>/schedstat), not /proc/<pid>/stat's clock ticks, which count in
    10 ms steps and read 0 for an init shorter than one."""
    total_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total_ns += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total_ns / 1e6


class Emulator(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.served = 0
        self.total = 1 + int(os.environ.get("COLDSTART_WARM", "20"))
        self.handed = None
        self.pid = None
        self.warm = []
        self.marks = {}
        self.done = threading.Event()
        self.release = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        if self.path != f"{RUNTIME}/invocation/next":
            return self.answer(404, b"{}")
        if server.served >= server.total:
            # The last poll: park it until the run is over (the process is then killed).
            server.done.set()
            server.release.wait(30)
            return self.answer(204, b"")
        server.served += 1
        if "init" not in server.marks:
            server.marks["init"] = time.perf_counter()
            server.marks["init_cpu"] = cpu_ms(server.pid) if server.pid else float("nan")
        server.handed = time.perf_counter()
        body = json.dumps(server.event).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("lambda-runtime-aws-request-id", f"coldstart-{server.served}")
        self.send_header("lambda-runtime-deadline-ms", str(int(time.time() * 1000) + 30_000))
        self.send_header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:coldstart",
        )
        self.send_header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        server = self.server
        length = int(self.headers.get("content-length") or 0)
        payload = self.rfile.read(length) if length else b""
        if self.path.endswith("/response"):
            now = time.perf_counter()
            if "response" not in server.marks:
                server.marks["response"] = now
                try:
                    server.marks["status"] = json.loads(payload).get("statusCode")
                except ValueError:
                    server.marks["status"] = "?"
            else:
                server.warm.append((now - server.handed) * 1000)
        else:  # init/error or invocation/<id>/error
            server.marks["error"] = payload.decode(errors="replace")
            server.done.set()
        self.answer(202, b"{}")

    def answer(self, status, body):
        try:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the parked poll of a process the run has killed


def run_once(binary, event):
    server = Emulator(event)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME=os.path.basename(binary),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/coldstart",
        AWS_LAMBDA_LOG_STREAM_NAME="coldstart",
        RUST_LOG="warn",
    )
    started = time.perf_counter()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.pid = process.pid
    finished = server.done.wait(60)
    # CPU time and peak RSS of the process (init and every invocation), before it is killed.
    with open(f"/proc/{process.pid}/status") as status:
        rss_kb = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    server.release.set()
    process.kill()
    _, stderr = process.communicate()
    server.shutdown()
    marks = server.marks
    if not finished or "error" in marks or "response" not in marks:
        raise SystemExit(f"{binary}: no response ({marks}); stderr:\n{stderr.decode()[-2000:]}")
    warm = statistics.median(server.warm) if server.warm else float("nan")
    return (
        (marks["init"] - started) * 1000,
        (marks["response"] - started) * 1000,
        marks["status"],
        warm,
        marks["init_cpu"],
        rss_kb / 1024,
    )


def main():
    directory, runs, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    warm = os.environ.get("COLDSTART_WARM", "20")
    print(
        f"{'function':16} {'init ms':>8} {'first response ms':>18}  status  {'warm ms':>8}"
        f"  {'init CPU ms':>11}  {'peak RSS MB':>11}  (median of {runs}; warm: median of {warm};"
        f" peak RSS: whole process)"
    )
    for spec in specs:
        function, event_file = spec.split("=", 1)
        with open(event_file) as f:
            event = json.load(f)
        results = [run_once(os.path.join(directory, function), event) for _ in range(runs)]
        init = statistics.median(r[0] for r in results)
        first = statistics.median(r[1] for r in results)
        warm_ms = statistics.median(r[3] for r in results)
        cpu = statistics.median(r[4] for r in results)
        rss = max(r[5] for r in results)
        print(
            f"{function:16} {init:8.1f} {first:18.1f}  {results[0][2]!s:6}  {warm_ms:8.1f}"
            f"  {cpu:11.1f}  {rss:11.1f}"
        )


if __name__ == "__main__":
    main()
