# Sourced by scripts/test and scripts/bench: installs (once, into .venv-aws) and starts the
# DynamoDB/SES emulator (moto, serialised: see scripts/moto_serial.py) on a free 127.0.0.1 port,
# exports the AWS client environment for it, and stops it when the calling script exits.
# A server that does not come up fails the caller: nothing skips.

if ! .venv-aws/bin/python -c 'import moto, pyotp' 2>/dev/null; then
  python3 -m venv .venv-aws
  .venv-aws/bin/pip install --quiet --disable-pip-version-check \
    'moto[dynamodb,ses,secretsmanager]==5.2.5' flask flask-cors 'pyotp==2.9.0'
fi

moto_log=$(mktemp)
.venv-aws/bin/python scripts/moto_serial.py -H 127.0.0.1 -p 0 >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; rm -f "$moto_log"' EXIT
moto_port=""
for _ in $(seq 1 100); do
  moto_port=$(grep -oE 'Running on http://127\.0\.0\.1:[0-9]+' "$moto_log" | grep -oE '[0-9]+$' | head -1 || true)
  if [ -n "$moto_port" ] && curl -fsS "http://127.0.0.1:$moto_port/moto-api/data.json" >/dev/null 2>&1; then
    break
  fi
  kill -0 "$moto_pid" 2>/dev/null || { cat "$moto_log" >&2; echo "moto server died" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$moto_port/moto-api/data.json" >/dev/null 2>&1 \
  || { cat "$moto_log" >&2; echo "moto server did not start" >&2; exit 1; }
echo "moto server on 127.0.0.1:$moto_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# moto answers one request at a time (scripts/moto_serial.py): under the race tests a call can
# queue for longer than DynamoDB's production attempt timeout (700 ms), so give it room.
export AWS_ATTEMPT_TIMEOUT_MS=5000 AWS_OPERATION_TIMEOUT_MS=20000
export PYOTP_PYTHON="$PWD/.venv-aws/bin/python"
