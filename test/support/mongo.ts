/**
 * The official MongoDB driver (from the functions package) against the
 * harness's wire server, or a real MongoDB when MONGODB_URI points at one.
 */
import { createRequire } from "node:module";
import path from "node:path";
import type { Db, MongoClient } from "mongodb";
import { FUNCTIONS_DIR, env } from "./suite";

let client: MongoClient | undefined;

export async function testMongo(): Promise<Db> {
  if (!client) {
    const { MongoClient: Client } = createRequire(path.join(FUNCTIONS_DIR, "package.json"))(
      "mongodb",
    ) as typeof import("mongodb");
    client = new Client(env("MONGODB_URI"), { serverSelectionTimeoutMS: 5000 });
    await client.connect();
  }
  return client.db(process.env.MONGODB_DB ?? "metered_ai");
}

export async function closeTestMongo(): Promise<void> {
  await client?.close();
  client = undefined;
}
