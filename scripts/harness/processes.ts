/**
 * Child processes that must not outlive the harness.
 *
 * Each child runs in its own process group (detached), so stopping it also
 * stops whatever it started (firebase-tools starts Java emulators and function
 * runtimes). Teardown sends SIGTERM/SIGINT to every group, waits, then SIGKILLs
 * what is left; it runs on normal exit, failure and Ctrl-C. Should the harness
 * die before it finishes (tsx SIGKILLs it when it does not confirm a relayed
 * signal within ~60 ms), its reaper (reaper.mjs) kills every process carrying
 * this run's mark and restores the files it wrote.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, readFileSync, readdirSync, rmSync, writeFileSync, type WriteStream } from "node:fs";
import path from "node:path";

export interface Managed {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  log: string;
  /** Processes seen below this one (see rememberTree), killed with it even if they were re-parented. */
  known: Set<number>;
}

/** Records the current process tree below `managed`, so teardown reaches it even if the leader dies first. */
export function rememberTree(managed: Managed): void {
  if (managed.child.pid !== undefined) for (const pid of descendantsOf(managed.child.pid)) managed.known.add(pid);
}

type Cleanup = () => Promise<void> | void;

const children: Managed[] = [];
const cleanups: Cleanup[] = [];
let tearingDown: Promise<void> | undefined;

/** The variable every process the harness starts inherits, naming its run (see reaper.mjs). */
export const RUN_MARK = "HARNESS_RUN_MARK";

/** What the reaper undoes if the harness dies before its teardown did (reaper.mjs). */
interface ReaperPlan {
  /** The process groups of the children (each child leads one), with the leader's start time (against pid reuse). */
  groups: Array<{ pgid: number; started: string | null }>;
  remove: string[];
  restore: Array<{ path: string; content: string }>;
}
const reaperPlan: ReaperPlan = { groups: [], remove: [], restore: [] };
let reaperManifest: string | undefined;
let reaper: ChildProcess | undefined;

/**
 * Marks this run (every child started from now on inherits the mark) and starts its reaper, a process of its own
 * session that waits for this one to end and, if the teardown did not finish, finishes it. Call before starting
 * any child.
 */
export function startReaper(runDir: string): void {
  const mark = `${process.pid}-${randomBytes(6).toString("hex")}`;
  process.env[RUN_MARK] = mark;
  reaperManifest = path.join(runDir, "reaper.json");
  writeReaperPlan();
  const env = { ...process.env };
  delete env[RUN_MARK];
  reaper = spawn(process.execPath, [path.join(__dirname, "reaper.mjs"), String(process.pid), mark, reaperManifest], {
    detached: true,
    stdio: "ignore",
    env,
  });
  reaper.unref();
}

/** Tells the reaper about a file or folder the teardown removes, or a file it restores to `content`. */
export function reapPath(entry: { remove: string } | { restore: string; content: string }): void {
  if ("remove" in entry) reaperPlan.remove.push(entry.remove);
  else reaperPlan.restore.push({ path: entry.restore, content: entry.content });
  writeReaperPlan();
}

/** A process's start time (field 22 of /proc/{pid}/stat), or null: with the pid, it names one process. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function writeReaperPlan(): void {
  if (reaperManifest) writeFileSync(reaperManifest, JSON.stringify(reaperPlan));
}

/** Processes carrying this run's mark (the harness's descendants, re-parented or not), this one excepted. */
export function markedProcesses(): number[] {
  const mark = process.env[RUN_MARK];
  if (!mark) return [];
  const line = `${RUN_MARK}=${mark}`;
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "latin1").split("\0").includes(line)) found.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** Starts `command` in a new process group, its output appended to `logFile` (and echoed when `echo` is set). */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions & { logFile: string; echo?: boolean; echoRaw?: boolean },
): Managed {
  const log: WriteStream = createWriteStream(options.logFile, { flags: "a" });
  const child = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on("data", (chunk: Buffer) => {
      log.write(chunk);
      if (options.echoRaw) process.stdout.write(chunk);
      else if (options.echo) process.stdout.write(prefixLines(name, chunk.toString()));
    });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      log.end();
      resolve(code);
    });
    child.once("error", (error) => {
      log.write(`spawn error: ${error.message}\n`);
      resolve(-1);
    });
  });
  const managed: Managed = { name, child, exited, log: options.logFile, known: new Set() };
  children.push(managed);
  // Not every child keeps the run mark readable (redis-server rewrites its environment for its process title),
  // so the reaper also knows each child's group.
  if (child.pid !== undefined && reaperManifest) {
    reaperPlan.groups.push({ pgid: child.pid, started: startTimeOf(child.pid) });
    writeReaperPlan();
  }
  return managed;
}

/** Registers work to do at teardown (in-process servers, temp folders); run in reverse order. */
export function onTeardown(cleanup: Cleanup): void {
  cleanups.push(cleanup);
}

/** Stops one managed process group: `signal`, then SIGKILL after `graceMs`. */
export async function stopProcess(
  managed: Managed,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 15_000,
  { signalled = false }: { signalled?: boolean } = {},
): Promise<void> {
  const pid = managed.child.pid;
  if (pid === undefined || managed.child.exitCode !== null || managed.child.signalCode !== null) {
    // Its own children may still be alive.
    killGroup(pid, "SIGKILL");
    for (const known of managed.known) {
      killGroup(known, "SIGKILL");
      killPid(known);
    }
    return;
  }
  // firebase-tools starts its Java emulators detached, in process groups of their own: remember the
  // whole tree now, while they are still its children, so none survives if it is killed before it stops them.
  const tree = new Set([...managed.known, ...descendantsOf(pid)]);
  // Not twice: a second SIGINT makes firebase-tools exit without stopping its emulators.
  if (!signalled) killGroup(pid, signal);
  const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), graceMs).unref());
  await Promise.race([managed.exited, timer]);
  // Whatever the leader did, nothing of its group or tree may stay behind.
  killGroup(pid, "SIGKILL");
  for (const child of tree) {
    killGroup(child, "SIGKILL");
    killPid(child);
  }
  const index = children.indexOf(managed);
  if (index >= 0) children.splice(index, 1);
}

export function isTearingDown(): boolean {
  return tearingDown !== undefined;
}

/** Stops every child and runs every cleanup, once. */
export function teardown(): Promise<void> {
  tearingDown ??= (async () => {
    // firebase-tools shuts its emulators down cleanly on SIGINT; others take SIGTERM. Every group is signalled
    // first, before the slower /proc walks: if we are killed mid-teardown (tsx SIGKILLs us ~60 ms after relaying a
    // signal we did not confirm in time), every child has at least been told, and the reaper does the rest.
    const stopping = [...children].reverse();
    const signalOf = (managed: Managed): NodeJS.Signals => (managed.name === "firebase" ? "SIGINT" : "SIGTERM");
    for (const managed of stopping) killGroup(managed.child.pid, signalOf(managed));
    await Promise.all(stopping.map((managed) => stopProcess(managed, signalOf(managed), 15_000, { signalled: true })));
    for (const cleanup of [...cleanups].reverse()) {
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`teardown: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
    // Whatever escaped the process groups and trees (re-parented before we looked) still carries the mark.
    for (const pid of markedProcesses()) killPid(pid);
    // The teardown is done: the reaper has nothing left to do.
    if (reaperManifest) rmSync(reaperManifest, { force: true });
    if (reaper?.pid !== undefined) killPid(reaper.pid);
  })();
  return tearingDown;
}

/**
 * Makes Ctrl-C, SIGTERM, SIGHUP and crashes tear everything down before exiting.
 *
 * Ctrl-C in a terminal signals the whole foreground process group (npm, sh, tsx and this
 * process), and tsx relays the signal to us once more: a handler that runs only once would leave
 * the second SIGINT to Node's default action, killing us mid-teardown with every emulator still
 * running. So every signal is handled for the whole life of the process; after the first, they
 * only say that teardown is under way. npm may exit before us and close our stdout; output
 * errors are ignored then, so a broken pipe cannot cut the teardown short either.
 */
export function installExitHandlers(): void {
  let exiting = false;
  const exitAfterTeardown = (code: number, message?: string) => {
    if (exiting) return;
    exiting = true;
    if (message) say(message);
    void teardown().finally(() => process.exit(code));
  };
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
  const signals: Array<[NodeJS.Signals, number]> = [
    ["SIGINT", 130],
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ];
  for (const [signal, code] of signals) process.on(signal, () => exitAfterTeardown(code, "\nstopping…\n"));
  process.on("uncaughtException", (error) =>
    exitAfterTeardown(1, `harness crashed: ${error.stack ?? error.message}\n`),
  );
  process.on("unhandledRejection", (reason) =>
    exitAfterTeardown(1, `harness crashed: ${reason instanceof Error ? reason.stack : String(reason)}\n`),
  );
  // Last resort on a synchronous exit: no waiting possible, so SIGKILL every group.
  process.once("exit", () => {
    for (const managed of children) {
      const pid = managed.child.pid;
      if (pid === undefined) continue;
      for (const child of descendantsOf(pid)) killGroup(child, "SIGKILL");
      killGroup(pid, "SIGKILL");
    }
  });
}

/** Every process below `pid`, from /proc (Linux) or `ps` elsewhere. */
export function descendantsOf(pid: number): number[] {
  const parents = new Map<number, number>();
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        // Field 4 is the parent pid; the command (field 2) may contain spaces, so parse after its ")".
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        parents.set(Number(entry), parent);
      } catch {
        // the process ended while we looked
      }
    }
  } catch {
    const listing = spawnSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8" }).stdout ?? "";
    for (const line of listing.split("\n")) {
      const [child, parent] = line.trim().split(/\s+/).map(Number);
      if (child && parent) parents.set(child, parent);
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const current = queue.shift()!;
    for (const [child, parent] of parents) {
      if (parent === current && !found.includes(child)) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

function prefixLines(name: string, text: string): string {
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => `[${name}] ${line}\n`)
    .join("");
}

/** Writes to stdout unless it is gone (the terminal or npm exited first); teardown goes on either way. */
function say(text: string): void {
  try {
    process.stdout.write(text);
  } catch {
    // Nothing to tell anyone.
  }
}
