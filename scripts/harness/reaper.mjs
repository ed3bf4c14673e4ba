/**
 * The harness's reaper: a small process of its own (own session, plain node, no tsx) that outlives the harness
 * and finishes its teardown if the harness dies without doing it.
 *
 * The harness can be killed mid-teardown: `tsx` relays a SIGINT to it and SIGKILLs it when it does not confirm
 * within ~60 ms (a busy 2-core machine is enough), and `kill -9` needs no reason. Its children then live on:
 * the functions runtimes (children of the firebase CLI), redis-server, the Java emulators. Every process the
 * harness starts inherits its run mark (`HARNESS_RUN_MARK`, unique per run), so what is left is exactly the
 * processes carrying that mark: never a process another run or person started.
 *
 *   node scripts/harness/reaper.mjs <harness pid> <run mark> <manifest.json>
 *
 * Not every process keeps the mark readable: redis-server rewrites its environment for its process title. So
 * the manifest also lists the process group each child of the harness leads (`groups`, with the leader's start
 * time): a process in such a group is ours if the leader is gone (its pid cannot be reused while the group has
 * members) or is still the same process (same start time).
 *
 * Once the harness pid is gone, and only if the manifest still exists (the harness removes it when its own
 * teardown finished): SIGKILL every process carrying the mark or in one of those groups (repeated until none is
 * found), then restore or remove the files it lists:
 * `{"groups": [{"pgid", "started"}…], "remove": [path…], "restore": [{"path", "content"}…]}`.
 */
import { appendFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const [pidArg, mark, manifest] = process.argv.slice(2);
const harness = Number(pidArg);
if (!Number.isInteger(harness) || harness <= 0 || !mark || !manifest) {
  process.stderr.write("usage: reaper.mjs <harness pid> <run mark> <manifest.json>\n");
  process.exit(2);
}
const line = `HARNESS_RUN_MARK=${mark}`;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

/** Fields after the command in /proc/{pid}/stat: [0] state, [2] process group, [19] start time. */
function statOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** Processes left behind: carrying the mark, or in a group a child of the harness led (see above). */
function leftBehind(groups) {
  const ours = new Set(
    groups
      .filter(({ pgid, started }) => {
        const leader = statOf(pgid);
        return leader === null || leader[0] === "Z" || leader[19] === started;
      })
      .map(({ pgid }) => pgid),
  );
  const found = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!/^\d+$/.test(entry) || pid === process.pid) continue;
    try {
      if (
        ours.has(Number(statOf(pid)?.[2])) ||
        readFileSync(`/proc/${entry}/environ`, "latin1").split("\0").includes(line)
      )
        found.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function reap() {
  let plan;
  try {
    plan = JSON.parse(readFileSync(manifest, "utf8"));
  } catch {
    return; // the harness finished its own teardown
  }
  // A process may start another while we kill: look again until a look finds none (bounded).
  let killed = 0;
  for (let round = 0; round < 20; round += 1) {
    const left = leftBehind(plan.groups ?? []);
    if (left.length === 0) break;
    killed += left.length;
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await sleep(200);
  }
  for (const { path, content } of plan.restore ?? []) writeFileSync(path, content);
  for (const path of plan.remove ?? []) rmSync(path, { recursive: true, force: true });
  rmSync(manifest, { force: true });
  // In the run folder beside the other logs: says that the harness died before its teardown finished.
  appendFileSync(
    join(dirname(manifest), "reaper.log"),
    `${new Date().toISOString()} harness ${harness} ended before its teardown finished: killed ${killed} process(es), ` +
      `restored ${(plan.restore ?? []).length} and removed ${(plan.remove ?? []).length} path(s)\n`,
  );
}

const timer = setInterval(() => {
  if (alive(harness)) return;
  clearInterval(timer);
  void reap().finally(() => process.exit(0));
}, 250);
