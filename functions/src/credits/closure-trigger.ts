/** Firestore trigger for a deleted `users/{uid}`: closes the credit account (see closure.ts). */
import { onDocumentDeleted } from "firebase-functions/v2/firestore";
import { firestore, realtimeDb } from "../adapters/firebase";
import { logs } from "../shared/logs";
import { closeAccount } from "./closure";

export const onUserDeleted = onDocumentDeleted({ document: "users/{uid}", retry: true, timeoutSeconds: 120 }, async (event) => {
  const result = await closeAccount({ db: firestore(), rtdb: realtimeDb() }, event.params.uid, deletedVersion(event.data?.get("ledger_version")));
  logs.accountClosed(event.params.uid, event.id, result.jobsFailed, result.holdsReleased, result.errors.length);
  // What settled stays settled; a retry settles the rest and skips what is done.
  if (result.errors.length > 0) throw new Error(`account ${event.params.uid} not fully closed: ${result.errors.join("; ")}`);
});

/** The deleted document's ledger version; a document without one never had credits work to settle. */
function deletedVersion(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) ? value : 0;
}
