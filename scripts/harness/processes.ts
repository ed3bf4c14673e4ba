/**
 * Child processes that must not outlive the harness.
 *
 * Each child runs in its own process group (detached), so stopping it also
 * stops whatever it started (firebase-tools starts Java emulators and function
 * runtimes). Teardown sends SIGTERM/SIGINT to every group, waits, then SIGKILLs
 * what is left; it runs on normal exit, failure and Ctrl-C.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createWriteStream, readFileSync, readdirSync, type WriteStream } from "node:fs";

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
  killGroup(pid, signal);
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
    // firebase-tools shuts its emulators down cleanly on SIGINT; others take SIGTERM.
    await Promise.all(
      [...children]
        .reverse()
        .map((managed) => stopProcess(managed, managed.name === "firebase" ? "SIGINT" : "SIGTERM")),
    );
    for (const cleanup of [...cleanups].reverse()) {
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`teardown: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
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
