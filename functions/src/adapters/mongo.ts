/** MongoDB client, created and connected on first use, with short server-selection timeouts. */
import type { Db, MongoClient } from "mongodb";
import { MONGODB_DB, MONGODB_URI } from "../config";
import { Unavailable } from "../shared/errors";
import { logs } from "../shared/logs";

let client: MongoClient | undefined;
let connecting: Promise<MongoClient> | undefined;

/**
 * Whether MONGODB_URI names a server. When it is empty, what lives in MongoDB
 * (sessions, notifications) is off: callers that can do without it skip it.
 */
export function mongoConfigured(): boolean {
  if (MONGODB_URI.value() !== "") return true;
  logs.componentDisabled("mongodb", "MONGODB_URI is empty");
  return false;
}

/** The database; throws Unavailable when MongoDB is not configured. */
export async function mongoDb(): Promise<Db> {
  if (!mongoConfigured()) throw new Unavailable("MongoDB", "it is not configured (MONGODB_URI is empty)");
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
