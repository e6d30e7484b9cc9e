"""Cold start of each Lambda binary, measured under a minimal Lambda runtime API emulator.

For each function: start its release binary as Lambda would (AWS_LAMBDA_RUNTIME_API pointing
here), time process start -> first `GET /invocation/next` (init: config, clients, the DynamoDB
warm-up read) and -> the first invocation's response (init + first request). The event is the
function's sample from events/. Prints medians over a few runs. Needs the DynamoDB endpoint and
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


class Emulator(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.served = False
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
        if server.served:
            # The second poll: park it until the run is over (the process is then killed).
            server.release.wait(30)
            return self.answer(204, b"")
        server.served = True
        server.marks.setdefault("init", time.perf_counter())
        body = json.dumps(server.event).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("lambda-runtime-aws-request-id", "coldstart-1")
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
            server.marks["response"] = time.perf_counter()
            try:
                server.marks["status"] = json.loads(payload).get("statusCode")
            except ValueError:
                server.marks["status"] = "?"
        else:  # init/error or invocation/<id>/error
            server.marks["error"] = payload.decode(errors="replace")
        self.answer(202, b"{}")
        server.done.set()

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
    finished = server.done.wait(30)
    server.release.set()
    process.kill()
    _, stderr = process.communicate()
    server.shutdown()
    marks = server.marks
    if not finished or "error" in marks or "response" not in marks:
        raise SystemExit(f"{binary}: no response ({marks}); stderr:\n{stderr.decode()[-2000:]}")
    return (
        (marks["init"] - started) * 1000,
        (marks["response"] - started) * 1000,
        marks["status"],
    )


def main():
    directory, runs, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print(f"{'function':16} {'init ms':>8} {'first response ms':>18}  status  (median of {runs})")
    for spec in specs:
        function, event_file = spec.split("=", 1)
        with open(event_file) as f:
            event = json.load(f)
        results = [run_once(os.path.join(directory, function), event) for _ in range(runs)]
        init = statistics.median(r[0] for r in results)
        first = statistics.median(r[1] for r in results)
        print(f"{function:16} {init:8.1f} {first:18.1f}  {results[0][2]}")


if __name__ == "__main__":
    main()
