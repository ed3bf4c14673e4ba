#!/usr/bin/env bash
# Stops a running suite the two ways people do and checks that nothing is left behind.
#
#   bash scripts/check-ctrl-c.sh [group]   Ctrl-C as a terminal presses it: `npm start` is started as the leader of
#                                          a new process group and, once ready, SIGINT goes to that whole group
#                                          (npm, sh, tsx and the harness).
#   bash scripts/check-ctrl-c.sh signal    SIGINT to the tsx wrapper and the harness's node process only, not their
#                                          group, as `pkill -INT -f "tsx scripts/harness.ts sim"` does, while the
#                                          simulation runs (functions runtimes are up). tsx relays the signal and
#                                          SIGKILLs the harness if it does not answer within ~60 ms, so the
#                                          harness's own teardown may be cut short: its reaper must finish it.
#   bash scripts/check-ctrl-c.sh kill      The same run, but SIGKILL to the harness alone: nothing of its teardown
#                                          runs, so everything is the reaper's to do (its line in reaper.log shows it).
#
# Either way it fails if any process that inherited this run's marker is still alive after a deadline, or if the
# files the harness writes for a run are not as it found them. In group mode it first checks the demo through the running
# suite (scripts/check-demo.ts). `npm test` runs group mode last, once its own suites have stopped: it starts a
# second suite in this checkout, which would rewrite functions/.env.local under a running one. Run one at a time.
set -u
cd "$(dirname "$0")/.."
how=${1:-group}
mark="HARNESS_CTRL_C_CHECK=$$-$RANDOM"
log=$(mktemp)
marked() { grep -lsxzF "$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
# redis-server overwrites its environment (for its process title), so it is found by the port this run gave it.
redis_left() {
  local port
  port=$(grep -o "redis://127.0.0.1:[0-9]*" "$log" | head -1 | cut -d: -f3)
  [ -n "$port" ] && ps -eo pid=,args= | grep "redis-server 127.0.0.1:$port\$" | grep -v grep | awk '{print $1}'
}
# Marked processes whose command line contains $1.
marked_running() {
  for pid in $(marked); do
    tr "\0" " " < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" && echo "$pid"
  done
}
# The files a run writes: it restores the functions' env files as it found them and removes .harness/env.
run_files="functions/.env.local functions/.secret.local"
before=$(for file in $run_files; do [ -e "$file" ] && echo "$file $(md5sum < "$file")"; done)
[ -n "$before" ] && echo "note: $(echo "$before" | cut -d' ' -f1 | tr '\n' ' ')found before the run (left by an earlier one?), to be restored as found"
case "$how" in
  group) env "$mark" setsid npm start > "$log" 2>&1 < /dev/null & ;;
  signal | kill)
    env "$mark" SIM_BUDGET_MS=600000 setsid node_modules/.bin/tsx scripts/harness.ts sim > "$log" 2>&1 < /dev/null &
    ;;
  *) echo "usage: $0 [group|signal|kill]"; exit 2 ;;
esac
leader=$!
for _ in $(seq 1 600); do grep -q "ready:" "$log" && break; kill -0 "$leader" 2>/dev/null || break; sleep 1; done
if ! grep -q "ready:" "$log"; then echo "the suite never became ready:"; tail -20 "$log"; kill -KILL -- "-$leader" 2>/dev/null; exit 1; fi
harness=""
demo=0
if [ "$how" = group ]; then
  # What the demo promises, through the running suite's callables, before it is stopped.
  node_modules/.bin/tsx scripts/check-demo.ts || demo=1
  echo "ready with $(marked | wc -l) processes; pressing Ctrl-C (SIGINT to process group $leader)"
  kill -INT -- "-$leader"
else
  # Wait (with a deadline) until the simulation has function runtimes running, as in the reported case.
  for _ in $(seq 1 180); do [ -n "$(marked_running functionsEmulatorRuntime)" ] && break; sleep 1; done
  sleep 5
  harness=$(marked_running "scripts/harness.ts sim" | grep -vx "$leader" | head -1)
  echo "running with $(marked | wc -l) processes ($(marked_running functionsEmulatorRuntime | wc -l) function runtimes, $(redis_left | wc -l) redis-server)"
  if [ "$how" = signal ]; then
    echo "SIGINT to tsx ($leader) and the harness (${harness:-none}) only"
    kill -INT "$leader" ${harness:+"$harness"}
  else
    echo "SIGKILL to the harness (${harness:-none}) alone"
    kill -KILL ${harness:+"$harness"}
  fi
fi
left=""
for second in $(seq 1 90); do
  left=$(marked; redis_left)
  [ -z "$left" ] && break
  sleep 1
done
status=$demo
if [ -n "$left" ]; then
  echo "FAIL: processes still alive after 90 s:"
  for pid in $left; do ps -o pid=,args= -p "$pid" | cut -c1-160; kill -KILL "$pid" 2>/dev/null; done
  status=1
else
  echo "every process of the run exited within ${second} s"
fi
after=$(for file in $run_files; do [ -e "$file" ] && echo "$file $(md5sum < "$file")"; done)
if [ "$after" != "$before" ]; then
  echo "FAIL: the run's files are not as they were before it:"
  diff <(echo "$before") <(echo "$after")
  status=1
fi
if [ -e .harness/env ]; then echo "FAIL: .harness/env left behind"; status=1; fi
reaped=$(grep -h "harness ${harness:-none} ended" .harness/run-*/reaper.log 2>/dev/null)
[ -n "$reaped" ] && echo "reaper: $reaped"
echo "last lines of the run:"; grep -v "WARN  lance" "$log" | tail -3
exit $status
