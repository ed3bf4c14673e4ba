/**
 * Clients of the stores the harness started, for integration tests that call
 * use cases directly. They come from the functions package (the same SDK
 * copies the functions load), configured by the harness's environment.
 */
import type { Db, MongoClient } from "mongodb";
import type { Connection } from "@lancedb/lancedb";
import type { Firestore } from "firebase-admin/firestore";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { FUNCTIONS_DIR, suite } from "./suite";

export { firestore, realtimeDb } from "../../functions/src/adapters/firebase";

/** Loads a package as the functions package resolves it. */
export function functionsRequire<T>(name: string): T {
  return require(require.resolve(name, { paths: [FUNCTIONS_DIR] })) as T;
}

/** A gateway to the harness's redis-server whose breaker never opens in a test. */
export function liveRedisGateway(): RedisGateway {
  return new RedisGateway({
    url: suite.redisUrl,
    commandTimeoutMs: 2000,
    connectWaitMs: 2000,
    breaker: { failureThreshold: 1000, cooldownMs: 10 },
  });
}

/** "Redis down": a gateway to port 1 on loopback, where nothing listens, so every call fails fast. */
export function downRedisGateway(): RedisGateway {
  return new RedisGateway({
    url: "redis://127.0.0.1:1",
    commandTimeoutMs: 100,
    connectWaitMs: 100,
    breaker: { failureThreshold: 1, cooldownMs: 60_000 },
  });
}

let unwatched: Firestore | undefined;
const UNWATCHED_PROJECT = () => `${suite.projectId}-unwatched`;

/**
 * The Firestore emulator under a project the functions emulator does not serve,
 * so no trigger reacts to what a test writes there. For tests that drive a
 * trigger's use case by hand (the balance mirror) and must not race the
 * deployed trigger doing the same thing for the same document.
 */
export function unwatchedFirestore(): Firestore {
  if (!unwatched) {
    const { initializeApp } = functionsRequire<typeof import("firebase-admin/app")>("firebase-admin/app");
    const { getFirestore } = functionsRequire<typeof import("firebase-admin/firestore")>("firebase-admin/firestore");
    unwatched = getFirestore(initializeApp({ projectId: UNWATCHED_PROJECT() }, "unwatched"));
  }
  return unwatched;
}

const otherInstances = new Map<string, Firestore>();

/**
 * A second client of the same Firestore emulator and project (the harness's, or `unwatched` for
 * unwatchedFirestore's), as another Cloud Functions instance has: what a use case given it remembers per
 * instance (credits/committed-state.ts) is apart from what the first client's does.
 */
export function otherInstanceFirestore(project: "watched" | "unwatched" = "watched"): Firestore {
  let other = otherInstances.get(project);
  if (!other) {
    const { initializeApp } = functionsRequire<typeof import("firebase-admin/app")>("firebase-admin/app");
    const { getFirestore } = functionsRequire<typeof import("firebase-admin/firestore")>("firebase-admin/firestore");
    const projectId = project === "watched" ? suite.projectId : UNWATCHED_PROJECT();
    other = getFirestore(initializeApp({ projectId }, `another-instance-${project}`));
    otherInstances.set(project, other);
  }
  return other;
}

/** A clock fixed at `at` that tests may move. */
export function fixedClock(at: Date = new Date()): { now(): Date; set(to: Date): void; advance(ms: number): void } {
  let current = at;
  return {
    now: () => current,
    set: (to) => (current = to),
    advance: (ms) => (current = new Date(current.getTime() + ms)),
  };
}

let mongoClient: Promise<MongoClient> | undefined;

/** The harness's MongoDB (the functions' database name, default of MONGODB_DB). */
export async function mongo(): Promise<Db> {
  if (!mongoClient) {
    const { MongoClient: Client } = functionsRequire<typeof import("mongodb")>("mongodb");
    mongoClient = new Client(suite.mongoUri, { serverSelectionTimeoutMS: 5000 }).connect();
  }
  return (await mongoClient).db(process.env.MONGODB_DB ?? "metered_ai");
}

export async function closeMongo(): Promise<void> {
  const client = mongoClient;
  mongoClient = undefined;
  if (client) await (await client).close();
}

/** A LanceDB connection on a folder of its own. */
export async function lanceAt(folder: string): Promise<Connection> {
  const lancedb = functionsRequire<typeof import("@lancedb/lancedb")>("@lancedb/lancedb");
  return lancedb.connect(folder);
}

/**
 * Root-level hook (this module is loaded by test files, so mocha registers it
 * on the root suite): after every test, release the clients' sockets so mocha
 * can exit. Outside mocha (the benchmarks use these clients too) there is no hook.
 */
if (typeof after === "function")
  after(async () => {
    await closeMongo();
    const { getApps, deleteApp } = functionsRequire<typeof import("firebase-admin/app")>("firebase-admin/app");
    unwatched = undefined;
    await Promise.all(getApps().map((app) => deleteApp(app)));
    // A handle left open keeps mocha alive after the last test, and CI would wait until its
    // time limit. Name what is still open and fail instead (unref'd: a clean exit is not delayed).
    setTimeout(() => {
      console.error("mocha has not exited 60 s after the last test; still open:", process.getActiveResourcesInfo());
      process.exit(1);
    }, 60_000).unref();
  });
