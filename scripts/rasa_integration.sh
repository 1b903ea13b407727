#!/usr/bin/env bash
# Real-Rasa integration: install Rasa 3.6.21 (Python 3.10) in a cached venv outside the repo,
# train the NLU model from nlu/config.yml + nlu/data (cached by content hash), serve it with
# token auth on a free loopback port, benchmark it against the embedded interpreter, then run
# tests/test_rasa_integration.py (pytest -m rasa) against it. The server is always stopped at exit.
#
# Run from anywhere:  bash scripts/rasa_integration.sh
# Environment:
#   KINDRED_PYTHON        the main venv's python (default .venv/bin/python)
#   KINDRED_PYTHON310     a Python 3.10 to use (default: pyenv's 3.10.x, else python3.10 on PATH)
#   KINDRED_RASA_VENV     Rasa's venv (default ~/.cache/kindred/rasa-3.6.21-venv)
#   KINDRED_RASA_MODELS   trained-model cache (default ~/.cache/kindred/rasa-models)
#   KINDRED_RASA_UNPINNED set to 1 to install without the known-good constraints below
#   KINDRED_RASA_BENCH    set to 0 to skip the benchmark
set -euo pipefail

RASA_VERSION=3.6.21
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KINDRED_PYTHON="${KINDRED_PYTHON:-.venv/bin/python}"
RASA_VENV="${KINDRED_RASA_VENV:-$HOME/.cache/kindred/rasa-$RASA_VERSION-venv}"
MODEL_CACHE="${KINDRED_RASA_MODELS:-$HOME/.cache/kindred/rasa-models}"
NLU_CONFIG=nlu/config.yml
NLU_DATA=nlu/data
NLU_DOMAIN=nlu/domain.yml

export RASA_TELEMETRY_ENABLED=false       # no phoning home (and no network here anyway)
export TF_CPP_MIN_LOG_LEVEL=2             # TensorFlow's C++ info chatter
export SQLALCHEMY_SILENCE_UBER_WARNING=1  # Rasa 3.6 uses the SQLAlchemy 1.4 API
export PYTHONWARNINGS=ignore              # only for Rasa's own processes' chatter
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[rasa-integration %(%H:%M:%S)T] %s\n' -1 "$*"; }
elapsed() { echo "$(( SECONDS - $1 ))s"; }

if [[ ! -x "$KINDRED_PYTHON" ]] && ! command -v "$KINDRED_PYTHON" >/dev/null 2>&1; then
    say "no main python at $KINDRED_PYTHON: run 'pip install -e .[test]' into .venv first, or set KINDRED_PYTHON" >&2
    exit 2
fi

# ---------------------------------------------------------------- Python 3.10 for Rasa
is_py310() { [[ -n "$1" ]] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python310() {
    local candidates=() root
    [[ -n "${KINDRED_PYTHON310:-}" ]] && candidates+=("$KINDRED_PYTHON310")
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null || true)"
    fi
    root="${root:-${PYENV_ROOT:-$HOME/.pyenv}}"
    if [[ -d "$root/versions" ]]; then
        while IFS= read -r dir; do
            candidates+=("$dir/bin/python")
        done < <(find "$root/versions" -maxdepth 1 -name '3.10*' 2>/dev/null | sort -Vr)
    fi
    command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
    local c
    for c in "${candidates[@]}"; do
        if is_py310 "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

if ! PY310="$(find_python310)"; then
    echo "################################################################"
    echo "### SKIPPED: no Python 3.10, real-Rasa tests not run          ###"
    echo "### (set KINDRED_PYTHON310 or install 3.10 with pyenv)        ###"
    echo "################################################################"
    exit 0
fi
say "Python 3.10: $PY310"

# ---------------------------------------------------------------- Rasa venv (cached)
# A known-good resolution of rasa==3.6.21 on Linux x86_64 / CPython 3.10 (2026-11-27): Rasa 3.6
# leaves many dependencies unbounded, and their later releases can break its imports.
# Rasa itself pins setuptools==70.3.x; pip is held below 24.1 (stricter metadata checks).
write_constraints() {
    cat <<'EOF'
absl-py==1.4.0
aio-pika==8.2.3
aiofiles==25.1.0
aiogram==2.15
aiohttp==3.9.5
aiohttp-retry==2.9.1
aiormq==6.4.2
aiosignal==1.4.0
anyio==4.16.0
APScheduler==3.9.1.post1
astunparse==1.6.3
async-timeout==4.0.3
attrs==22.1.0
babel==2.19.0
bidict==0.23.1
boto3==1.44.8
botocore==1.44.8
CacheControl==0.12.14
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
colorclass==2.2.2
coloredlogs==15.0.1
colorhash==1.2.1
confluent-kafka==2.16.1
cryptography==50.0.2
cycler==0.12.1
dask==2022.10.2
dnspython==2.3.0
docopt==0.6.2
exceptiongroup==1.3.2
fbmessenger==6.0.0
filelock==4.1.0
fire==0.7.1
flatbuffers==25.12.19
fonttools==4.65.0
frozenlist==1.8.0
fsspec==2026.9.0
future==1.0.0
gast==0.4.0
google-auth==2.63.0
google-auth-oauthlib==1.0.0
google-pasta==0.2.0
greenlet==3.5.6
grpcio==1.85.3
h11==0.16.0
h5py==3.16.0
hf-xet==1.8.0
httpcore2==2.14.0
httptools==0.9.0
httpx2==2.14.0
huggingface_hub==2.4.0
humanfriendly==10.0
idna==3.20
jax==0.4.30
jaxlib==0.4.30
jmespath==1.1.0
joblib==1.6.0
jsonpickle==3.0.4
jsonschema==4.17.3
keras==2.12.0
kiwisolver==1.5.1
libclang==18.1.1
locket==1.0.0
Markdown==3.10.3
MarkupSafe==3.0.4
matplotlib==3.5.3
mattermostwrapper==2.2
ml_dtypes==0.5.4
msgpack==1.2.4
multidict==5.2.0
networkx==2.6.3
numpy==1.23.5
oauthlib==4.0.1
opt_einsum==3.4.0
packaging==20.9
pamqp==3.2.1
partd==1.4.2
pillow==12.3.0
pluggy==1.7.0
portalocker==2.10.1
prompt-toolkit==3.0.28
propcache==0.5.4
protobuf==4.23.3
psycopg2-binary==2.9.13
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.11
pydantic==1.10.9
pydot==1.4.2
PyJWT==2.15.1
pykwalify==1.8.0
pymongo==4.3.3
pyparsing==3.3.3
pyrsistent==0.20.0
python-crfsuite==0.9.12
python-dateutil==2.8.2
python-engineio==4.15.1
python-socketio==5.18.1
pytz==2022.7.1
PyYAML==6.0.4
questionary==1.10.0
randomname==0.1.5
rasa==3.6.21
rasa-sdk==3.6.2
redis==4.6.0
regex==2022.10.31
requests==2.34.2
requests-oauthlib==2.0.0
requests-toolbelt==1.0.0
rocketchat-API==1.30.0
ruamel.yaml==0.17.21
ruamel.yaml.clib==0.2.15
s3transfer==0.19.3
safetensors==0.4.5
sanic==21.12.2
Sanic-Cors==2.0.1
sanic-jwt==1.8.0
sanic-routing==0.7.2
scikit-learn==1.1.3
scipy==1.10.1
sentry-sdk==1.14.0
setuptools==70.3.0
simple-websocket==1.1.0
six==1.17.0
sklearn-crfsuite==0.3.6
skops==0.9.0
slack_sdk==3.48.0
SQLAlchemy==1.4.54
structlog==23.3.0
structlog-sentry==2.1.0
tabulate==0.10.0
tarsafe==0.0.4
tensorboard==2.12.3
tensorboard-data-server==0.7.2
tensorflow==2.12.0
tensorflow-estimator==2.12.0
tensorflow-hub==0.13.0
tensorflow-io-gcs-filesystem==0.32.0
tensorflow-text==2.12.0
termcolor==3.3.0
terminaltables==3.1.10
threadpoolctl==3.8.0
tomli==2.5.0
toolz==1.2.0
tqdm==4.70.1
truststore==0.10.5
twilio==8.2.2
typing-utils==0.1.0
typing_extensions==4.16.0
tzlocal==5.4.5
ujson==5.13.0
urllib3==2.8.0
uvloop==0.23.0
wcwidth==0.9.4
webexteamssdk==1.6.1
websockets==10.4
Werkzeug==3.1.9
wrapt==1.14.2
wsproto==1.3.2
yarl==1.25.1
EOF
}

rasa_ready() {
    local version
    [[ -x "$RASA_VENV/bin/rasa" ]] || return 1
    version="$("$RASA_VENV/bin/rasa" --version 2>/dev/null)" || return 1
    grep -Eq "^Rasa Version *: *$RASA_VERSION\$" <<<"$version"
}

TMP="$(mktemp -d -t kindred-rasa.XXXXXX)"
RASA_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$RASA_PID" ]] && kill -0 "$RASA_PID" 2>/dev/null; then
        say "stopping Rasa server (pid $RASA_PID)"
        kill -TERM "$RASA_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$RASA_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$RASA_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
if rasa_ready; then
    say "reusing Rasa $RASA_VERSION venv at $RASA_VENV"
else
    say "installing Rasa $RASA_VERSION into $RASA_VENV (takes a few minutes, ~2.7 GB)"
    rm -rf "$RASA_VENV"
    mkdir -p "$(dirname "$RASA_VENV")"
    "$PY310" -m venv "$RASA_VENV"
    "$RASA_VENV/bin/python" -m pip install -q 'pip<24.1' wheel
    constraint_args=()
    if [[ "${KINDRED_RASA_UNPINNED:-0}" != 1 ]]; then
        write_constraints >"$TMP/constraints.txt"
        constraint_args=(-c "$TMP/constraints.txt")
    fi
    "$RASA_VENV/bin/python" -m pip install -q "${constraint_args[@]}" "rasa==$RASA_VERSION"
    if ! rasa_ready; then
        say "Rasa $RASA_VERSION did not install cleanly into $RASA_VENV" >&2
        "$RASA_VENV/bin/rasa" --version >&2 || true
        exit 1
    fi
    say "installed Rasa in $(elapsed "$t0")"
fi

# ---------------------------------------------------------------- model (cached by content)
for required in "$NLU_CONFIG" "$NLU_DATA"; do
    [[ -e "$required" ]] || { say "missing $required" >&2; exit 1; }
done
train_args=(--config "$NLU_CONFIG" --nlu "$NLU_DATA")
hash_inputs=("$NLU_CONFIG")
if [[ -f "$NLU_DOMAIN" ]]; then
    train_args+=(--domain "$NLU_DOMAIN")
    hash_inputs+=("$NLU_DOMAIN")
fi
DATA_HASH="$(
    {
        echo "rasa==$RASA_VERSION"
        find "${hash_inputs[@]}" "$NLU_DATA" -type f \( -name '*.yml' -o -name '*.yaml' \) -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)"
MODEL_DIR="$MODEL_CACHE/$DATA_HASH"
MODEL="$MODEL_DIR/kindred-nlu-$DATA_HASH.tar.gz"
t0=$SECONDS
if [[ -f "$MODEL" ]]; then
    say "reusing trained model $MODEL"
else
    say "training the NLU model (data hash $DATA_HASH)"
    "$RASA_VENV/bin/rasa" train nlu "${train_args[@]}" --out "$TMP/models" \
        --fixed-model-name "kindred-nlu-$DATA_HASH" >"$TMP/train.log" 2>&1 || {
        tail -n 60 "$TMP/train.log" >&2
        say "rasa train nlu failed" >&2
        exit 1
    }
    mkdir -p "$MODEL_DIR"
    mv "$TMP/models/kindred-nlu-$DATA_HASH.tar.gz" "$MODEL.partial"
    mv "$MODEL.partial" "$MODEL"
    say "trained in $(elapsed "$t0"): $MODEL"
fi

# ---------------------------------------------------------------- server
PORT="$("$KINDRED_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RASA_TOKEN="$("$KINDRED_PYTHON" -c 'import secrets; print(secrets.token_hex(24))')"
RASA_URL="http://127.0.0.1:$PORT"
say "starting Rasa on $RASA_URL"
t0=$SECONDS
"$RASA_VENV/bin/rasa" run --enable-api --auth-token="$RASA_TOKEN" -p "$PORT" -i 127.0.0.1 \
    --model "$MODEL" >"$TMP/server.log" 2>&1 &
RASA_PID=$!
disown "$RASA_PID"  # the last test SIGKILLs it: no job-control noise; the trap still stops it
export RASA_URL RASA_TOKEN RASA_PID

if ! "$KINDRED_PYTHON" - <<'EOF'
import os, sys, time, urllib.request

url = f"{os.environ['RASA_URL']}/status?token={os.environ['RASA_TOKEN']}"
pid = int(os.environ["RASA_PID"])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the Rasa server exited before it was ready")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit("the Rasa server was not ready within 180 s")
EOF
then
    tail -n 60 "$TMP/server.log" >&2
    exit 1
fi
say "Rasa ready in $(elapsed "$t0") (pid $RASA_PID)"

# ---------------------------------------------------------------- benchmark, then tests
unset PYTHONWARNINGS
if [[ "${KINDRED_RASA_BENCH:-1}" != 0 ]]; then
    say "benchmark: embedded vs Rasa over HTTP"
    "$KINDRED_PYTHON" -c '
import asyncio, json, os
from nlu.bench import bench_nlu
result = asyncio.run(bench_nlu(os.environ["RASA_URL"], os.environ["RASA_TOKEN"], rasa_pid=int(os.environ["RASA_PID"])))
print(json.dumps(result))
'
fi

say "pytest -m rasa tests/test_rasa_integration.py"
"$KINDRED_PYTHON" -m pytest -m rasa tests/test_rasa_integration.py -q -p no:cacheprovider
