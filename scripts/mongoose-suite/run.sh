#!/usr/bin/env bash
# Runs Mongoose's own mocha suite twice against the project's wire server (npm run mongo): plain, and
# with the plugin registered globally. Fails when a test that passes plain fails or never runs with it.
# Usage, from the project root: scripts/mongoose-suite/run.sh MONGOOSE_SOURCE_DIR [mocha spec files...]
# It fetches no source: MONGOOSE_SOURCE_DIR is a checkout of github.com/Automattic/mongoose.
set -uo pipefail

usage='usage: scripts/mongoose-suite/run.sh MONGOOSE_SOURCE_DIR [mocha spec files...]'
[ $# -ge 1 ] || { echo "$usage"; exit 2; }
SRC=$(cd "$1" 2>/dev/null && pwd) || { echo "no such directory: $1"; echo "$usage"; exit 2; }
shift
[ -f "$SRC/lib/mongoose.js" ] && [ -d "$SRC/test" ] || { echo "$SRC is not Mongoose's source (lib/mongoose.js, test/)"; exit 2; }
PROJECT=$(pwd)
grep -q '"name": "mongoose-tripwire"' package.json 2>/dev/null || { echo "run it from the project root"; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)

# Reused between runs (the install is the slow part); MONGOOSE_SUITE_DIR moves it.
WORK=${MONGOOSE_SUITE_DIR:-${TMPDIR:-/tmp}/mongoose-tripwire-suite}
# Mongoose is staged where an install puts it: the plugin tells Mongoose's own frames by that path.
M=$WORK/node_modules/mongoose
R=$WORK/results
mkdir -p "$R"
if command -v flock >/dev/null; then
  exec 9>"$WORK/.lock"
  flock -n 9 || { echo "another run is using $WORK (set MONGOOSE_SUITE_DIR for a second one)"; exit 2; }
fi

# Restage when the source changes: another directory, version or commit.
stamp="$SRC $(node -p "require('$SRC/package.json').version") $(git -C "$SRC" rev-parse HEAD 2>/dev/null)"
if [ "$(cat "$M/.staged" 2>/dev/null)" != "$stamp" ]; then
  echo "staging Mongoose $(node -p "require('$SRC/package.json').version") from $SRC"
  rm -rf "$M" && mkdir -p "$M"
  tar -C "$SRC" --exclude=./.git --exclude=./node_modules -cf - . | tar -C "$M" -xf - || exit 2
  # Its devDependencies (mocha, the driver, ...) from the npm registry; no install scripts, so
  # mongodb-memory-server downloads no mongod: the tests use our server through MONGOOSE_TEST_URI.
  (cd "$M" && MONGOMS_DISABLE_POSTINSTALL=1 npm install --ignore-scripts --no-audit --no-fund >"$R/npm-install.log" 2>&1) \
    || { echo "npm install in the staged Mongoose failed:"; tail -5 "$R/npm-install.log"; exit 2; }
  echo "$stamp" > "$M/.staged"
fi

npm run build >"$R/build.log" 2>&1 || { echo "npm run build failed:"; tail -5 "$R/build.log"; exit 2; }
# Mongoose's own npm test arguments (the encryption tests need a real mongod and a KMS).
[ $# -eq 0 ] && set -- --ignore "test/encryption/**/*.test.js" "./test/**/*.test.js"

SERVER_PIDF=""
stop_server() { [ -s "$SERVER_PIDF" ] && kill -- -"$(cat "$SERVER_PIDF")" 2>/dev/null; rm -f "$SERVER_PIDF"; SERVER_PIDF=""; }
# Interrupted or killed, the run still stops its server.
trap stop_server EXIT
trap 'exit 130' INT TERM

run_once() { # LABEL WITH_PLUGIN(0|1) spec...
  local label=$1 with_plugin=$2; shift 2
  local log="$R/$label-server.log"
  rm -f "$R/$label.json" "$R/$label-counts.json"
  SERVER_PIDF="$R/$label-server.pid"
  # A session of its own: npm, its shell and node are stopped as one process group.
  setsid bash -c 'echo $$ > "$1"; cd "$2" && exec npm run --silent mongo' _ "$SERVER_PIDF" "$PROJECT" >"$log" 2>&1 </dev/null &
  local uri=""
  for _ in $(seq 1 300); do
    uri=$(grep -o 'mongodb://[^ ]*' "$log" | head -1); [ -n "$uri" ] && break; sleep 0.2
  done
  [ -n "$uri" ] || { stop_server; echo "npm run mongo printed no mongodb:// URI:"; tail -3 "$log"; return 2; }
  local extra=()
  [ "$with_plugin" = 1 ] && extra=(--require "$HERE/register.cjs")
  (cd "$M" && MONGOOSE_TEST_URI=$uri TRIPWIRE_PROJECT=$PROJECT TRIPWIRE_COUNTS=$R/$label-counts.json \
    ./node_modules/.bin/mocha --exit "${extra[@]}" --reporter json --reporter-option "output=$R/$label.json" "$@" \
    >"$R/$label.out" 2>&1)
  stop_server
  [ -s "$R/$label.json" ] || { echo "mocha wrote no report ($label):"; tail -5 "$R/$label.out"; return 2; }
}

complete_run() { # LABEL WITH_PLUGIN spec...: a run mocha aborted is repeated, up to three times
  local attempt
  for attempt in 1 2 3; do
    echo "$1 run$([ "$attempt" -gt 1 ] && echo " (attempt $attempt)")..."
    run_once "$@" || return 2
    node "$HERE/diff.cjs" --aborted "$R/$1.json" && return 0
    echo "($1: mocha aborted the run on a late rejection)"
  done
  echo "($1: aborted three times; comparing what ran)"
}

complete_run plain 0 "$@" || exit 2
complete_run plugin 1 "$@" || exit 2
echo "reports: $R"
node "$HERE/diff.cjs" "$R/plain.json" "$R/plugin.json" "$R/plugin-counts.json"
