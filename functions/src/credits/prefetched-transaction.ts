/**
 * A ledger change without a Firestore transaction: the reads come from
 * snapshots fetched outside one, the writes go into a `WriteBatch`. Two uses:
 *
 * - The hourly allowance pass changes many users at once: their documents are
 *   read in one `getAll` for many users, and a few users' writes share one commit.
 * - A spend's first attempt (guardedAttempt, below): its reads straight from
 *   Firestore, its writes one commit, without the transaction's locks and the
 *   SDK's timer tick before it.
 *
 * What makes it as safe as the transaction it stands in for: the write to
 * every document it read is guarded by what was read — `lastUpdateTime`
 * for a document that existed, `create` (must not exist) for one that did
 * not. Every change of a user's credits creates the next version's ledger
 * entry, `{uid}_v{version + 1}` (ledger.ts), as this change does, so any change
 * since the read fails its `create`; the user document's guard is a second
 * cover; and a `create` of a record with a deterministic id (the period's
 * allowance, an idempotency record) fails if someone else made it first.
 * A document written twice in one change (a grant's user document: its
 * balance, then its allowance period) is one write to the batch, the later
 * fields folded into the earlier. A batch is atomic: one failed guard and
 * nothing of it is written; the caller then runs the change through the
 * ordinary transaction, which reads again and decides again.
 *
 * Only the writes the ledger makes are supported (create; set, merged or not,
 * of a document read as missing; merged set or update of one read as
 * existing, with top-level fields only); anything else throws before the
 * batch is touched, and the caller takes the transactional path instead.
 */
import type {
  DocumentData,
  DocumentReference,
  DocumentSnapshot,
  Firestore,
  Query,
  QuerySnapshot,
  SetOptions,
  Transaction,
  WriteBatch,
  WriteResult,
} from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { SnapshotCache } from "../shared/read-ahead";
import { afterUpdate, forgetCommitted, missingSnapshot, recallCommitted, rememberCommitted } from "./committed-state";

/** A write this change asks for, kept until the change is complete. */
type Write =
  | { kind: "create"; ref: DocumentReference; data: DocumentData }
  | { kind: "update"; ref: DocumentReference; data: DocumentData; guard: DocumentSnapshot };

/** A write this adapter cannot guard; the caller runs the user through a transaction instead. */
export class UnsupportedWrite extends Error {}

/**
 * One user's change: the reads and writes of a transaction, the reads served by a SnapshotCache over `db.getAll`
 * (several users' documents fetched at once), the writes kept for a batch.
 */
export class PrefetchedTransaction {
  private readonly read = new Map<string, DocumentSnapshot>();
  private readonly writes: Write[] = [];
  /** Each document's one write: a later write to it is folded into it (see update). */
  private readonly written = new Map<string, Write>();

  /**
   * `queries`: run the work's queries (outside any transaction) instead of refusing them. Only for work whose
   * queries read what its guarded writes cover: the user's lots, which change only with a ledger change, whose
   * next entry the work creates too (guardedAttempt).
   */
  constructor(
    private readonly prefetch: SnapshotCache,
    private readonly options: { queries?: boolean } = {},
  ) {}

  /** The transaction the ledger's functions take (they only get, getAll, create, set and update). */
  asTransaction(): Transaction {
    return this as unknown as Transaction;
  }

  get(ref: DocumentReference): Promise<DocumentSnapshot>;
  get(query: Query): Promise<QuerySnapshot>;
  async get(target: DocumentReference | Query): Promise<DocumentSnapshot | QuerySnapshot> {
    if (typeof (target as Partial<DocumentReference>).collection !== "function") {
      // A query is not guarded itself: refused (the user is left to a transaction) unless the work's writes cover it.
      if (!this.options.queries) throw new UnsupportedWrite("a query read");
      const found = await (target as Query).get();
      // Its documents count as read (a later write to one is guarded by this snapshot, a later read answered by
      // it), except those read before: the ledger keeps using the values it read first, so the guard stays theirs.
      const fresh = found.docs.filter((snapshot) => !this.read.has(snapshot.ref.path));
      this.prefetch.seed(fresh);
      for (const snapshot of fresh) this.read.set(snapshot.ref.path, snapshot);
      return found;
    }
    const [snapshot] = await this.getAll(target as DocumentReference);
    return snapshot;
  }

  async getAll(...refs: DocumentReference[]): Promise<DocumentSnapshot[]> {
    const snapshots = await this.prefetch.load(refs);
    for (const snapshot of snapshots) this.read.set(snapshot.ref.path, snapshot);
    return snapshots;
  }

  create(ref: DocumentReference, data: DocumentData): this {
    if (this.written.has(ref.path)) throw new UnsupportedWrite(`second create of ${ref.path}`);
    const write: Write = { kind: "create", ref, data };
    this.writes.push(write);
    this.written.set(ref.path, write);
    return this;
  }

  set(ref: DocumentReference, data: DocumentData, options?: SetOptions): this {
    const first = !this.written.has(ref.path);
    const snapshot = this.read.get(ref.path);
    if (first && snapshot && !snapshot.exists) return this.create(ref, data);
    if (!options || !("merge" in options) || !options.merge) throw new UnsupportedWrite(`set of ${ref.path}`);
    if (first && !snapshot) throw new UnsupportedWrite(`unread ${ref.path}`);
    return this.update(ref, data);
  }

  update(ref: DocumentReference, data: DocumentData): this {
    // An update replaces a nested map that a merged set would merge: only top-level fields are the same.
    if (Object.values(data).some((value) => value !== null && Object.getPrototypeOf(value) === Object.prototype))
      throw new UnsupportedWrite(`nested fields of ${ref.path}`);
    const earlier = this.written.get(ref.path);
    if (earlier) {
      // Top-level fields, so the later write's fields replacing the earlier's is what the two writes would do; a
      // dotted key is a field path to update but a field name to create, and a transform other than the server's
      // time (an increment, a delete) depends on what the earlier write left, so such writes are not folded.
      if (Object.keys(data).some((key) => key.includes("."))) throw new UnsupportedWrite(`field path in ${ref.path}`);
      const { FieldValue } = firestoreValues();
      const relative = (value: unknown) => value instanceof FieldValue && !value.isEqual(FieldValue.serverTimestamp());
      if (Object.values(data).some(relative)) throw new UnsupportedWrite(`a transform folded in ${ref.path}`);
      earlier.data = { ...earlier.data, ...data };
      return this;
    }
    const guard = this.read.get(ref.path);
    if (!guard?.exists) throw new UnsupportedWrite(`update of unread ${ref.path}`);
    const write: Write = { kind: "update", ref, data, guard };
    this.writes.push(write);
    this.written.set(ref.path, write);
    return this;
  }

  delete(ref: DocumentReference): this {
    throw new UnsupportedWrite(`delete of ${ref.path}`);
  }

  /** `ref` is written with a guard on what was read of it (it existed, and an update checks its update time). */
  guards(ref: DocumentReference): boolean {
    const write = this.written.get(ref.path);
    return write?.kind === "update" && write.guard.updateTime !== undefined;
  }

  /** `ref` is created by this change (it was read, or assumed, missing). */
  creates(path: string): boolean {
    return this.written.get(path)?.kind === "create";
  }

  /**
   * After the batch committed (`results` in commitInto's order): every document read or updated, as it now
   * stands, for the next change to read instead of Firestore (committed-state.ts); undefined if one updated
   * document's new state is not known without reading it.
   */
  committed(results: WriteResult[]): DocumentSnapshot[] | undefined {
    const now = new Map([...this.read].filter(([, snapshot]) => snapshot.exists));
    for (const [index, write] of this.writes.entries()) {
      if (write.kind === "create") {
        now.delete(write.ref.path);
        continue;
      }
      const after = afterUpdate(write.guard, write.data, results[index].writeTime);
      if (!after) return undefined;
      now.set(write.ref.path, after);
    }
    return [...now.values()];
  }

  /** The writes commitInto adds: one per document written. */
  get writeCount(): number {
    return this.writes.length;
  }

  /** Adds the change's writes to `batch`, one per document, each guarded by what was read. */
  commitInto(batch: WriteBatch): void {
    for (const write of this.writes) {
      if (write.kind === "create") batch.create(write.ref, write.data);
      else if (write.guard.updateTime) batch.update(write.ref, write.data, { lastUpdateTime: write.guard.updateTime });
      else batch.update(write.ref, write.data);
    }
  }
}

/** guardedAttempt's answer when the work must run in a transaction instead. */
export const MISSED: unique symbol = Symbol("missed");

/**
 * One attempt at a ledger change without a transaction: `work` reads straight from Firestore (a `getAll` per
 * call, queries as they come) and its writes are committed as one guarded batch (above). MISSED, with nothing
 * written, when the change must run in a transaction instead:
 *
 * - `work` threw (a refusal too: the reads outside a transaction need not be one snapshot, so only a
 *   transaction's refusal is final) or asked for what is not supported;
 * - its writes do not include a guarded update of `cover` (the user document): only an open account's change
 *   is tried this way;
 * - the commit failed: a guard, or anything else. That is safe to retry as a transaction only because the batch
 *   creates the change's idempotency record: had it committed after all, the transaction finds the record and
 *   answers as a replay (so only idempotentTransaction uses this).
 *
 * Why the guards are enough for a spend (docs/credits.md "A spend's first try"): every ledger change of the user
 * since the read creates the entry `{uid}_v{version + 1}` that this batch creates too, so its `create` fails;
 * every document written is guarded on its own; and what the spend reads and leaves as it was (a lot it does
 * not draw, the query that found the lots) changes only with a ledger change, or, for a lot past its expiry
 * with nothing unheld, in a way a spend never draws from. The user document's update time is a second cover.
 *
 * When this instance's last guarded change of the user left their documents in memory (committed-state.ts), the
 * work reads those first, and what is not there as missing; that try's commit stands only if it creates every
 * document assumed missing. It is guarded like any other, so a change made since (here or elsewhere) fails it,
 * and the work runs once more with reads from Firestore. Work that writes nothing (a replay) needs no commit:
 * its answer stands as read from Firestore.
 */
export async function guardedAttempt<T>(
  db: Firestore,
  cover: DocumentReference,
  work: (tx: Transaction) => Promise<T>,
  options: { recall?: boolean } = {},
): Promise<T | typeof MISSED> {
  const remembered = options.recall === false ? undefined : recallCommitted(db, cover);
  if (remembered) {
    const answer = await attemptOnce(db, cover, work, remembered);
    if (answer !== MISSED) return answer;
    forgetCommitted(db, cover.id, remembered);
  }
  return attemptOnce(db, cover, work);
}

async function attemptOnce<T>(
  db: Firestore,
  cover: DocumentReference,
  work: (tx: Transaction) => Promise<T>,
  remembered?: Map<string, DocumentSnapshot>,
): Promise<T | typeof MISSED> {
  const assumedMissing: string[] = [];
  const read = remembered
    ? async (refs: DocumentReference[]) =>
        refs.map((ref) => {
          const snapshot = remembered.get(ref.path);
          if (snapshot) return snapshot;
          assumedMissing.push(ref.path);
          return missingSnapshot(ref);
        })
    : (refs: DocumentReference[]) => db.getAll(...refs);
  const change = new PrefetchedTransaction(new SnapshotCache(read), { queries: true });
  let answer: T;
  try {
    answer = await work(change.asTransaction());
  } catch {
    return MISSED;
  }
  if (change.writeCount === 0) return remembered ? MISSED : answer;
  if (!change.guards(cover) || assumedMissing.some((path) => !change.creates(path))) return MISSED;
  let results: WriteResult[];
  try {
    const batch = db.batch();
    change.commitInto(batch);
    results = await batch.commit();
  } catch {
    return MISSED;
  }
  // The change has committed: what is remembered of it is best effort, never its answer.
  let now: DocumentSnapshot[] | undefined;
  try {
    now = change.committed(results);
  } catch {
    now = undefined;
  }
  if (now) rememberCommitted(db, cover, now);
  else forgetCommitted(db, cover.id);
  return answer;
}
