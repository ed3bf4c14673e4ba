/**
 * LanceDB connection, opened on first use.
 *
 * The native module is large, so it is imported here only, inside the handlers
 * that search or index; the credit path never loads it.
 */
import type { Connection } from "@lancedb/lancedb";
import { LANCEDB_URI } from "../config";

let connection: Promise<Connection> | undefined;

export function lanceDb(): Promise<Connection> {
  if (!connection) {
    const lancedb = require("@lancedb/lancedb") as typeof import("@lancedb/lancedb");
    connection = lancedb.connect(LANCEDB_URI.value()).catch((error: unknown) => {
      connection = undefined;
      throw error;
    });
  }
  return connection;
}
