/**
 * Clients the embeddings tests use to look behind the functions: Firestore
 * and LanceDB (the same folder the functions write, from LANCEDB_URI) and a
 * Pub/Sub publisher, all from the functions package's own dependencies.
 */
import type { Connection, Table } from "@lancedb/lancedb";
import type { PubSub } from "@google-cloud/pubsub";
import type { App } from "firebase-admin/app";
import type { Firestore } from "firebase-admin/firestore";
import { FUNCTIONS_DIR, env } from "./suite";

const load = <T>(name: string): T => require(require.resolve(name, { paths: [FUNCTIONS_DIR] })) as T;

let app: App | undefined;
let db: Firestore | undefined;
let lance: Promise<Connection> | undefined;
let pubsubClient: PubSub | undefined;

/** Firestore in the emulator (FIRESTORE_EMULATOR_HOST from the harness). */
export function testFirestore(): Firestore {
  if (!db) {
    const { initializeApp, getApps } = load<typeof import("firebase-admin/app")>("firebase-admin/app");
    app =
      getApps().find((existing) => existing.name === "embeddings-tests") ??
      initializeApp({ projectId: env("GCLOUD_PROJECT") }, "embeddings-tests");
    db = load<typeof import("firebase-admin/firestore")>("firebase-admin/firestore").getFirestore(app);
  }
  return db;
}

/** The LanceDB folder the functions use in this run, with strongly consistent reads. */
export function testLance(uri = env("LANCEDB_URI")): Promise<Connection> {
  if (uri !== env("LANCEDB_URI"))
    return load<typeof import("@lancedb/lancedb")>("@lancedb/lancedb").connect(uri, { readConsistencyInterval: 0 });
  lance ??= load<typeof import("@lancedb/lancedb")>("@lancedb/lancedb").connect(uri, { readConsistencyInterval: 0 });
  return lance;
}

export async function openIfExists(name: string): Promise<Table | undefined> {
  const conn = await testLance();
  return (await conn.tableNames()).includes(name) ? conn.openTable(name) : undefined;
}

/** A Pub/Sub client on the emulator (PUBSUB_EMULATOR_HOST). */
export function testPubSub(): PubSub {
  if (!pubsubClient) {
    env("PUBSUB_EMULATOR_HOST");
    const { PubSub: Client } = load<typeof import("@google-cloud/pubsub")>("@google-cloud/pubsub");
    pubsubClient = new Client({ projectId: env("GCLOUD_PROJECT") });
  }
  return pubsubClient;
}

/** Publishes raw bytes to a topic, returning the message id. */
export function publishRaw(topic: string, data: Buffer | string): Promise<string> {
  return testPubSub()
    .topic(topic)
    .publishMessage({ data: Buffer.isBuffer(data) ? data : Buffer.from(data) });
}

/** The embedding API server the harness runs in test mode (see scripts/harness/embeddings-api.ts). */
export async function embeddingsApiStats(): Promise<Record<string, number>> {
  const base = env("EMBEDDING_BASE_URL").replace(/\/v1$/, "");
  const response = await fetch(`${base}/_stats`, { signal: AbortSignal.timeout(5000) });
  return (await response.json()) as Record<string, number>;
}
