/**
 * Firebase Admin clients, created on first use.
 *
 * `firebase-admin/firestore` pulls in the Firestore SDK and `firebase-admin/database`
 * the RTDB client; a function that never touches them never loads them.
 */
import type { App } from "firebase-admin/app";
import type { Firestore } from "firebase-admin/firestore";
import type { Database } from "firebase-admin/database";

let app: App | undefined;
let db: Firestore | undefined;
let rtdb: Database | undefined;

export function adminApp(): App {
  if (!app) {
    const { getApps, initializeApp } = require("firebase-admin/app") as typeof import("firebase-admin/app");
    // The default app: a process may hold named apps too (tests do), configured for something else.
    app = getApps().find((existing) => existing.name === "[DEFAULT]") ?? initializeApp();
  }
  return app;
}

export function firestore(): Firestore {
  if (!db) {
    const { getFirestore } = require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
    db = getFirestore(adminApp());
  }
  return db;
}

/** The Realtime Database; its URL comes from FIREBASE_CONFIG (set by the runtime and the emulator). */
export function realtimeDb(): Database {
  if (!rtdb) {
    const { getDatabase } = require("firebase-admin/database") as typeof import("firebase-admin/database");
    rtdb = getDatabase(adminApp());
  }
  return rtdb;
}

type FirestoreValues = Pick<typeof import("firebase-admin/firestore"), "FieldValue" | "Timestamp" | "FieldPath">;
let values: FirestoreValues | undefined;

/**
 * Firestore's FieldValue / Timestamp, loaded with the Firestore SDK (not at import), once: the ledger asks for
 * them per write, and a `require` per call is a module resolution per call under a resolver hook (tsx, which the
 * tests and benchmarks run in; profiled at 0.09 ms a call, 7% of an allowance pass).
 */
export function firestoreValues(): FirestoreValues {
  if (!values) {
    const { FieldValue, Timestamp, FieldPath } =
      require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
    values = { FieldValue, Timestamp, FieldPath };
  }
  return values;
}
