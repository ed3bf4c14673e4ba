#!/usr/bin/env bash
# Presses Ctrl-C on `npm start` the way a terminal does and checks that nothing is left behind.
#
# A terminal sends SIGINT to its whole foreground process group (npm, sh, tsx and the harness);
# this starts `npm start` as the leader of a new group, waits until it is ready, signals the group,
# then fails if any process that inherited this run's marker is still alive after a deadline, or if
# the files the harness writes for a run are still there. Not part of `npm test`: it starts a second
# suite in this checkout, which would rewrite functions/.env.local under a running one.
#   bash scripts/check-ctrl-c.sh
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
mark="HARNESS_CTRL_C_CHECK=$$-$RANDOM"
log=$(mktemp)
marked() {
  for dir in /proc/[0-9]*; do
    { tr "\0" "\n" < "$dir/environ" | grep -qx "$mark" && echo "${dir#/proc/}"; } 2>/dev/null
  done
}
env "$mark" setsid npm start > "$log" 2>&1 < /dev/null &
leader=$!
for _ in $(seq 1 600); do grep -q "ready:" "$log" && break; kill -0 "$leader" 2>/dev/null || break; sleep 1; done
if ! grep -q "ready:" "$log"; then echo "npm start never became ready:"; tail -20 "$log"; kill -KILL -- "-$leader" 2>/dev/null; exit 1; fi
echo "ready with $(marked | wc -l) processes; pressing Ctrl-C (SIGINT to process group $leader)"
kill -INT -- "-$leader"
left=""
for second in $(seq 1 90); do
  left=$(marked)
  [ -z "$left" ] && break
  sleep 1
done
status=0
if [ -n "$left" ]; then
  echo "FAIL: processes still alive after 90 s:"
  for pid in $left; do ps -o pid=,args= -p "$pid" | cut -c1-160; kill -KILL "$pid" 2>/dev/null; done
  status=1
else
  echo "every process of the run exited within ${second} s"
fi
for file in functions/.env.local functions/.secret.local .harness/env; do
  if [ -e "$root/$file" ]; then echo "FAIL: $file left behind"; status=1; fi
done
echo "last lines of the run:"; tail -3 "$log"
exit $status
