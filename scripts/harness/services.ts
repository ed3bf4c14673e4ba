/**
 * The services the suite needs, each started on a free loopback port.
 *
 * Child processes go through processes.ts so teardown always reaches them;
 * in-process servers (the RTDB substitute, the MongoDB wire server) register
 * a teardown step.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { createConnection } from "node:net";
import path from "node:path";
import { freePort, http, waitFor } from "./net";
import { startRtdbSubstituteServer } from "./rtdb-substitute";
import { onTeardown, reapPath, rememberTree, startProcess, stopProcess, type Managed } from "./processes";

export const ROOT = path.resolve(__dirname, "..", "..");
export const STATE_DIR = path.join(ROOT, ".harness");
export const PROJECT_ID = "demo-metered-ai";
export const REGION = "us-central1";

/** TCP connect succeeds. */
export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

// ---------------------------------------------------------------- Redis

export interface RedisService {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  running(): boolean;
}

/** redis-server on a free port, no persistence. Can be stopped and started again on the same port (failure tests). */
export async function startRedis(logDir: string): Promise<RedisService> {
  const binary = findBinary("redis-server");
  if (!binary) throw new Error("redis-server is not installed (npm run setup installs it with apt-get)");
  const port = await freePort();
  let managed: Managed | undefined;
  const launch = async () => {
    managed = startProcess(
      "redis",
      binary,
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        logFile: path.join(logDir, "redis.log"),
      },
    );
    await waitFor("redis-server", () => portOpen(port), { timeoutMs: 10_000, intervalMs: 25 });
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    running: () => managed !== undefined,
    stop: async () => {
      if (!managed) return;
      const current = managed;
      managed = undefined;
      await stopProcess(current, "SIGKILL", 2000);
      await waitFor("redis port to close", async () => !(await portOpen(port)), { timeoutMs: 5000, intervalMs: 25 });
    },
    start: async () => {
      if (!managed) await launch();
    },
  };
}

// ---------------------------------------------------------------- MongoDB

export interface MongoService {
  uri: string;
  external: boolean;
}

/** MONGODB_URI when given (a real MongoDB), else the in-process CongoDB wire-protocol server. */
export async function startMongo(): Promise<MongoService> {
  if (process.env.MONGODB_URI) return { uri: process.env.MONGODB_URI, external: true };
  // CongoDB: a MongoDB wire-protocol server in TypeScript, shipped inside @push.rocks/smartmongo (ESM).
  const congo = (await import("@push.rocks/smartmongo/dist_ts/congodb/index.js")) as unknown as {
    CongoServer: new (options: { port: number; host: string }) => {
      start(): Promise<void>;
      stop(): Promise<void>;
      server: { address(): { port: number } };
    };
  };
  const server = new congo.CongoServer({ port: 0, host: "127.0.0.1" });
  await server.start();
  // The server's own `port` still says 0 when the OS picked one; the socket knows.
  const address = server.server.address();
  onTeardown(() => server.stop());
  return { uri: `mongodb://127.0.0.1:${address.port}/?directConnection=true`, external: false };
}

// ---------------------------------------------------------------- Realtime Database

export interface RtdbService {
  host: string;
  official: boolean;
}

/**
 * The RTDB substitute in this process, enforcing database.rules.json (see
 * rtdb-substitute.ts). The official emulator is used instead when firebase-tools
 * can run it (see startEmulators).
 */
export async function startRtdbSubstitute(): Promise<RtdbService> {
  const port = await freePort();
  const substitute = await startRtdbSubstituteServer({
    port,
    projectId: PROJECT_ID,
    rulesFile: path.join(ROOT, "database.rules.json"),
  });
  onTeardown(() => substitute.close());
  await waitFor("rtdb substitute", () => portOpen(port), { timeoutMs: 5000, intervalMs: 25 });
  return { host: substitute.host, official: false };
}

/** The official RTDB emulator runs only when firebase-tools has its jar already and Java is new enough. */
export function officialRtdbAvailable(): boolean {
  const cache = path.join(process.env.HOME ?? "/root", ".cache", "firebase", "emulators");
  const hasJar = existsSync(cache) && readdirSync(cache).some((name) => name.startsWith("firebase-database-emulator"));
  return hasJar && javaMajor() >= 11;
}

// ---------------------------------------------------------------- Firebase emulators

export interface EmulatorPorts {
  hub: number;
  logging: number;
  functions: number;
  auth: number;
  firestore: number;
  firestoreWs: number;
  pubsub: number;
  hosting: number;
  database: number;
}

export interface EmulatorSuite {
  ports: EmulatorPorts;
  functionsOrigin: string;
  process: Managed;
}

/**
 * firebase-tools' emulator suite with a generated config on free ports.
 * Uses the machine's own Firestore and Pub/Sub emulator binaries when the
 * Google Cloud SDK has them, firebase-tools' download otherwise.
 */
export async function startEmulators(options: {
  env: NodeJS.ProcessEnv;
  logDir: string;
  withDatabase: boolean;
  echo: boolean;
  /**
   * How many function invocations the emulator runs at once (its FUNCTIONS_EMULATOR_PARALLEL, 50 by
   * default). Each invocation without an idle worker for its function spawns a new Node process that
   * loads the whole package; 35 of them at once on 2 cores do not load within the emulator's limit.
   * Bounded, a burst queues and reuses the workers it started.
   */
  parallel?: number;
}): Promise<EmulatorSuite> {
  const [hub, logging, functions, auth, firestore, firestoreWs, pubsub, hosting, database] = await uniquePorts(9);
  const ports: EmulatorPorts = { hub, logging, functions, auth, firestore, firestoreWs, pubsub, hosting, database };
  const base = JSON.parse(readFileSync(path.join(ROOT, "firebase.json"), "utf8")) as {
    emulators: Record<string, unknown>;
  };
  const local = (port: number) => ({ host: "127.0.0.1", port });
  const config = {
    ...base,
    emulators: {
      singleProjectMode: true,
      hub: local(hub),
      logging: local(logging),
      functions: local(functions),
      auth: local(auth),
      firestore: { ...local(firestore), websocketPort: firestoreWs },
      pubsub: local(pubsub),
      hosting: local(hosting),
      ...(options.withDatabase ? { database: local(database) } : {}),
      ui: { enabled: false },
    },
  };
  // firebase-tools takes the project directory from the config file's folder, so it lives at the root.
  const configPath = path.join(ROOT, `.firebase.harness-${process.pid}.json`);
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  onTeardown(() => rmSync(configPath, { force: true }));
  reapPath({ remove: configPath });

  const only = ["functions", "firestore", "pubsub", "auth", "hosting", ...(options.withDatabase ? ["database"] : [])];
  const binaries = localEmulatorBinaries();
  const firebaseBin = path.join(ROOT, "node_modules", ".bin", "firebase");
  const child = startProcess(
    "firebase",
    firebaseBin,
    ["emulators:start", "--non-interactive", "--only", only.join(","), "--project", PROJECT_ID, "--config", configPath],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        ...options.env,
        ...binaries,
        FIREBASE_CLI_EXPERIMENTS: "",
        CI: "true",
        ...(options.parallel ? { FUNCTIONS_EMULATOR_PARALLEL: String(options.parallel) } : {}),
        // Seconds a new worker may take to load the package before the emulator gives up on it (30 by
        // default). A worker that misses it is dropped together with the request that started it, which
        // is never answered: on a busy 2-core machine a cold load can take longer than 30 s.
        FUNCTIONS_DISCOVERY_TIMEOUT: process.env.FUNCTIONS_DISCOVERY_TIMEOUT ?? "180",
      },
      logFile: path.join(options.logDir, "firebase.log"),
      echo: options.echo,
    },
  );
  const functionsOrigin = `http://127.0.0.1:${functions}`;
  const failed = child.exited.then((code) => {
    throw new Error(`firebase emulators exited early (code ${code}); see ${child.log}`);
  });
  await Promise.race([
    failed,
    waitFor(
      "the emulator suite and the functions to load",
      async () => {
        const { status, body } = await http(`http://127.0.0.1:${hub}/emulators`, { timeoutMs: 2000 });
        if (status !== 200 || typeof body !== "object" || body === null) return false;
        if (!only.every((name) => name in body)) return false;
        const backends = await http(`${functionsOrigin}/backends`, { timeoutMs: 2000 });
        const list = (backends.body as { backends?: Array<{ functionTriggers?: unknown[] }> }).backends ?? [];
        return list.some((backend) => (backend.functionTriggers?.length ?? 0) > 0) && allFunctionsRegistered(child.log);
      },
      { timeoutMs: 180_000, intervalMs: 250 },
    ),
  ]);
  failed.catch(() => undefined);
  rememberTree(child);
  return { ports, functionsOrigin, process: child };
}

/**
 * Loaded is not registered: the emulator registers functions one by one (a
 * Firestore trigger waits on the Firestore emulator), and a callable is not
 * served before its turn. Ready when every loaded function is initialized or ignored.
 */
function allFunctionsRegistered(logFile: string): boolean {
  let log: string;
  try {
    log = readFileSync(logFile, "utf8");
  } catch {
    return false;
  }
  const loaded = /Loaded functions definitions from source: ([^\n]*)\./.exec(log)?.[1];
  if (!loaded) return false;
  return loaded
    .split(",")
    .map((name) => name.trim())
    .every((name) => new RegExp(`functions\\[[a-z0-9-]+-${name}\\]: .*(initialized|ignored)`).test(log));
}

async function uniquePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** FIRESTORE/PUBSUB_EMULATOR_BINARY_PATH for the Google Cloud SDK's own emulators, when installed. */
function localEmulatorBinaries(): Record<string, string> {
  const out: Record<string, string> = {};
  const sdk = gcloudSdkRoot();
  if (!sdk) return out;
  const firestoreJar = path.join(sdk, "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar");
  if (existsSync(firestoreJar) && findBinary("jar"))
    out.FIRESTORE_EMULATOR_BINARY_PATH = firestoreWrapperJar(firestoreJar);
  const pubsub = path.join(sdk, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator");
  if (existsSync(pubsub)) out.PUBSUB_EMULATOR_BINARY_PATH = pubsub;
  return out;
}

/**
 * firebase-tools runs the Firestore emulator as `java -jar PATH`, but the SDK's
 * jar has no Main-Class; a two-line wrapper jar supplies it and points its
 * class path at the SDK jar.
 */
function firestoreWrapperJar(sdkJar: string): string {
  const dir = path.join(STATE_DIR, "cache");
  const jar = path.join(dir, "firestore-emulator-wrapper.jar");
  if (existsSync(jar)) return jar;
  mkdirSync(path.join(dir, "empty"), { recursive: true });
  const manifest = path.join(dir, "manifest.txt");
  writeFileSync(
    manifest,
    `Main-Class: com.google.cloud.datastore.emulator.firestore.CloudFirestore\nClass-Path: file:${sdkJar}\n`,
  );
  execFileSync("jar", ["cfm", jar, manifest, "-C", path.join(dir, "empty"), "."]);
  return jar;
}

function gcloudSdkRoot(): string | undefined {
  for (const candidate of [process.env.CLOUDSDK_ROOT, "/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk"]) {
    if (candidate && existsSync(path.join(candidate, "platform"))) return candidate;
  }
  if (!findBinary("gcloud")) return undefined;
  const result = spawnSync("gcloud", ["info", "--format=value(installation.sdk_root)"], { encoding: "utf8" });
  const root = result.stdout?.trim();
  return root && existsSync(root) ? root : undefined;
}

export function findBinary(name: string): string | undefined {
  const result = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  const found = result.stdout?.trim();
  return result.status === 0 && found ? found : undefined;
}

function javaMajor(): number {
  const result = spawnSync("java", ["-version"], { encoding: "utf8" });
  const match = /version "(\d+)/.exec(`${result.stderr}${result.stdout}`);
  return match ? Number(match[1]) : 0;
}
