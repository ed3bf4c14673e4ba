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
    const uri = LANCEDB_URI.value();
    // Functions run in many instances: reads must see other instances' writes. A local folder is
    // checked on every read (cheap); an object store at most every 2 s (each check is a request).
    const readConsistencyInterval = /^[a-z0-9]+:\/\//.test(uri) ? 2 : 0;
    connection = lancedb.connect(uri, { readConsistencyInterval }).catch((error: unknown) => {
      connection = undefined;
      throw error;
    });
  }
  return connection;
}
