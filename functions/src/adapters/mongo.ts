/** MongoDB client, created and connected on first use, with short server-selection timeouts. */
import type { Db, MongoClient } from "mongodb";
import { MONGODB_DB, MONGODB_URI } from "../config";

let client: MongoClient | undefined;
let connecting: Promise<MongoClient> | undefined;

export async function mongoDb(): Promise<Db> {
  if (!connecting) {
    const { MongoClient: Client } = require("mongodb") as typeof import("mongodb");
    client = new Client(MONGODB_URI.value(), {
      serverSelectionTimeoutMS: 2000,
      connectTimeoutMS: 2000,
      maxPoolSize: 10,
    });
    connecting = client.connect().catch((error: unknown) => {
      // Let the next call try again instead of caching the failure.
      connecting = undefined;
      client = undefined;
      throw error;
    });
  }
  return (await connecting).db(MONGODB_DB.value());
}
