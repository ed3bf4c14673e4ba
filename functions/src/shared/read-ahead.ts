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

/**
 * Snapshots kept by document path, each document read once: `load` reads the ones it does not hold yet in one
 * round trip through `read` (a transaction's `getAll` for readAhead, `db.getAll` for the allowance pass's
 * prefetch, credits/prefetched-transaction.ts) and answers the rest from memory.
 */
export class SnapshotCache {
  private readonly held = new Map<string, DocumentSnapshot>();

  constructor(private readonly read: (refs: DocumentReference[]) => Promise<DocumentSnapshot[]>) {}

  /** Snapshots read already (e.g. by the query that found them). */
  seed(snapshots: DocumentSnapshot[]): void {
    for (const snapshot of snapshots) this.held.set(snapshot.ref.path, snapshot);
  }

  has(ref: DocumentReference): boolean {
    return this.held.has(ref.path);
  }

  /** The snapshots of `refs`, in their order; what is not held yet is read first, once per document. */
  async load(refs: DocumentReference[]): Promise<DocumentSnapshot[]> {
    const missing = [...new Map(refs.filter((ref) => !this.has(ref)).map((ref) => [ref.path, ref])).values()];
    if (missing.length > 0) this.seed(await this.read(missing));
    return refs.map((ref) => this.held.get(ref.path) as DocumentSnapshot);
  }
}

export interface ReadAhead {
  /** The same transaction; its `get` and `getAll` of the documents read ahead are answered from memory. */
  tx: Transaction;
  /** The snapshots of `refs`, in their order. */
  snapshots: DocumentSnapshot[];
}

export async function readAhead(tx: Transaction, refs: DocumentReference[]): Promise<ReadAhead> {
  if (refs.length === 0) return { tx, snapshots: [] };
  const cache = new SnapshotCache((missing) => tx.getAll(...missing));
  const snapshots = await cache.load(refs);

  const isDocument = (target: unknown): target is DocumentReference =>
    typeof target === "object" && target !== null && typeof (target as DocumentReference).collection === "function";
  const getAll = (...args: unknown[]): Promise<DocumentSnapshot[]> =>
    // Read options (a field mask) read differently: those go to Firestore whole.
    args.every(isDocument)
      ? cache.load(args)
      : (tx.getAll as (...all: unknown[]) => Promise<DocumentSnapshot[]>)(...args);
  const get = async (target: unknown): Promise<unknown> => {
    if (isDocument(target) && cache.has(target)) return (await cache.load([target]))[0];
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
