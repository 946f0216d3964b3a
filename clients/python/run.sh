#!/usr/bin/env bash
# Generates the Python client from openapi/openapi.json with openapi-python-client (the version
# pinned in .ci/run, installed in VENV) and runs lifecycle.py with it against a live server.
#
#   clients/python/run.sh VENV URL        (the server's API token in GRADSCOPE_TOKEN)
#
# The generator must print nothing but its "Generating ..." line: any warning (a schema or a
# response it cannot read, which it would leave out of the client) fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$1"
url="$2"
: "${GRADSCOPE_TOKEN:?the API token of the server at $url}"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
log="$out/generate.log"
status=0
"$venv/bin/openapi-python-client" generate --path openapi/openapi.json --meta none \
  --config clients/python/config.yaml --output-path "$out/gradscope_client" >"$log" 2>&1 || status=$?
cat "$log"
if [ "$status" -ne 0 ]; then
  echo "openapi-python-client failed (exit $status)"
  exit 1
fi
if grep -qiE 'warning|error|unable|cannot|skipping' "$log" || grep -v '^Generating ' "$log" | grep -q '[^[:space:]]'; then
  echo "openapi-python-client printed more than its 'Generating' line (above): the document must generate cleanly"
  exit 1
fi
test -f "$out/gradscope_client/models/spec.py"

PYTHONPATH="$out" GRADSCOPE_URL="$url" "$venv/bin/python" clients/python/lifecycle.py
