/**
 * A Firestore transaction that reads, in its first round trip, documents the
 * code it calls will ask for later.
 *
 * A use case often knows, before it starts, most of what the code beneath it
 * will read (a webhook knows the payment, the grant's idempotency record, the
 * account and the lot the grant adds to), while that code reads them one
 * `getAll` at a time, each a round trip. `readAhead` reads them all in one
 * `getAll` and hands on a transaction that answers later reads of those
 * documents from the snapshots it holds. That is what a second read in the
 * same transaction would return: the transaction has read them, so it commits
 * only if they are unchanged. Reads of anything else go to Firestore as
 * before, so a wrong guess costs only the documents read for nothing.
 */
import type { DocumentReference, DocumentSnapshot, Transaction } from "firebase-admin/firestore";

export interface ReadAhead {
  /** The same transaction; its `get` and `getAll` of the documents read ahead are answered from memory. */
  tx: Transaction;
  /** The snapshots of `refs`, in their order. */
  snapshots: DocumentSnapshot[];
}

export async function readAhead(tx: Transaction, refs: DocumentReference[]): Promise<ReadAhead> {
  if (refs.length === 0) return { tx, snapshots: [] };
  const distinct = [...new Map(refs.map((ref) => [ref.path, ref])).values()];
  const held = new Map((await tx.getAll(...distinct)).map((snapshot) => [snapshot.ref.path, snapshot]));
  const snapshots = refs.map((ref) => held.get(ref.path) as DocumentSnapshot);

  const isDocument = (target: unknown): target is DocumentReference =>
    typeof target === "object" && target !== null && typeof (target as DocumentReference).collection === "function";
  const getAll = async (...args: unknown[]): Promise<DocumentSnapshot[]> => {
    // Read options (a field mask) read differently: those go to Firestore whole.
    if (!args.every(isDocument)) return (tx.getAll as (...all: unknown[]) => Promise<DocumentSnapshot[]>)(...args);
    const missing = [...new Map(args.filter((ref) => !held.has(ref.path)).map((ref) => [ref.path, ref])).values()];
    if (missing.length > 0) for (const snapshot of await tx.getAll(...missing)) held.set(snapshot.ref.path, snapshot);
    return args.map((ref) => held.get(ref.path) as DocumentSnapshot);
  };
  const get = (target: unknown): Promise<unknown> => {
    if (isDocument(target) && held.has(target.path)) return Promise.resolve(held.get(target.path));
    return (tx.get as (target: unknown) => Promise<unknown>)(target);
  };
  const ahead = new Proxy(tx, {
    get(target, property, receiver) {
      if (property === "getAll") return getAll;
      if (property === "get") return get;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? (value as (...all: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { tx: ahead, snapshots };
}
