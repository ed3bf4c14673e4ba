/**
 * Per instance: each user's documents as this instance's last guarded spend of
 * theirs left them (the user document and the lots it read or wrote, each with
 * the update time its commit gave it). The next spend of that user here reads
 * from this instead of from Firestore, and so usually makes one Firestore
 * round trip, its commit (prefetched-transaction.ts guardedAttempt).
 *
 * It is only a guess, and it never decides anything on its own: the commit it
 * leads to is guarded exactly as a commit after a fresh read is, and what it
 * assumes missing (the new request's idempotency record) must be created by
 * that commit. Any ledger change of the user since (on this instance or
 * another) created the entry `{uid}_v{version + 1}` that the commit creates
 * too; any other write to a document it writes moved that document's update
 * time. Either fails the commit, and the spend reads afresh. So it must hold
 * exactly what Firestore holds at those update times: it is built only from
 * writes whose result is known without reading (top-level fields, plain
 * values), and otherwise not at all (`afterUpdate`); a field set to the
 * server's time is remembered as not known, and reading it makes the spend
 * read afresh.
 *
 * Every ledger change on the instance forgets its user here (ledger.ts
 * postEntry and expireLot; user-lock.ts, every locked transaction), so a change
 * made on this instance costs the next spend nothing; one made on another
 * costs it one failed commit, unless the user lock's last holder says so first
 * (user-lock.ts lastHolderKeyOf).
 */
import type { DocumentData, DocumentReference, DocumentSnapshot, Firestore, Timestamp } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";

/** Users remembered per Firestore client (each up to a page of lots); the oldest is dropped past this. */
const MAX_USERS = 1_000;

const known = new WeakMap<Firestore, Map<string, Map<string, DocumentSnapshot>>>();

function usersOf(db: Firestore): Map<string, Map<string, DocumentSnapshot>> {
  let users = known.get(db);
  if (!users) {
    users = new Map();
    known.set(db, users);
  }
  return users;
}

/** The documents remembered for the user of `userDoc`, by path (undefined if none). */
export function recallCommitted(db: Firestore, userDoc: DocumentReference): Map<string, DocumentSnapshot> | undefined {
  return known.get(db)?.get(userDoc.id);
}

export function rememberCommitted(db: Firestore, userDoc: DocumentReference, snapshots: DocumentSnapshot[]): void {
  const users = usersOf(db);
  const user = snapshots.find((snapshot) => snapshot.ref.path === userDoc.path);
  // A change that committed after this one (concurrent, without the lock) may have been remembered first.
  const kept = users.get(userDoc.id)?.get(userDoc.path)?.updateTime;
  if (kept && user?.updateTime && kept.valueOf() > user.updateTime.valueOf()) return;
  users.delete(userDoc.id);
  if (!user) return;
  if (users.size >= MAX_USERS) users.delete(users.keys().next().value as string);
  users.set(userDoc.id, new Map(snapshots.map((snapshot) => [snapshot.ref.path, snapshot])));
}

/** Forgets `uid` here; with `ifStill`, only if that is still what is remembered (not a newer commit's). */
export function forgetCommitted(db: Firestore, uid: string, ifStill?: Map<string, DocumentSnapshot>): void {
  const users = known.get(db);
  if (!ifStill || users?.get(uid) === ifStill) users?.delete(uid);
}

/**
 * A document as a commit left it: what was read of it, with the update's fields over it. Undefined when that
 * cannot be known without reading it again: a field path (a dotted key), a nested map, a transform other than
 * the server's time (an increment, a delete), or an undefined value.
 */
export function afterUpdate(
  before: DocumentSnapshot,
  update: DocumentData,
  writeTime: Timestamp,
): DocumentSnapshot | undefined {
  const { FieldValue, Timestamp } = firestoreValues();
  const earlier = contents.get(before);
  const fields: DocumentData = earlier ? { ...earlier.fields } : { ...(before.data() ?? {}) };
  const unknownFields = new Set(earlier?.unknownFields);
  const stored = (value: unknown): { value: unknown } | undefined => {
    if (value === null || typeof value !== "object") return value === undefined ? undefined : { value };
    if (value instanceof Date) return { value: Timestamp.fromDate(value) };
    if (value instanceof Timestamp) return { value };
    if (Array.isArray(value)) {
      const items = value.map(stored);
      return items.every((item) => item !== undefined) ? { value: items.map((item) => item.value) } : undefined;
    }
    return undefined; // a map (an update replaces it, a merged set merges it), a reference, bytes, a vector
  };
  for (const [key, value] of Object.entries(update)) {
    if (key.includes(".")) return undefined;
    if (value instanceof FieldValue && value.isEqual(FieldValue.serverTimestamp())) {
      unknownFields.add(key);
      delete fields[key];
      continue;
    }
    const after = stored(value);
    if (!after) return undefined;
    fields[key] = after.value;
    unknownFields.delete(key);
  }
  return committedSnapshot(before.ref, fields, writeTime, before.createTime, unknownFields);
}

/** Thrown by a remembered document's field whose value this instance does not know; the change reads afresh. */
export class NotRemembered extends Error {}

/** A missing document, as a read outside a transaction would return it. */
export function missingSnapshot(ref: DocumentReference): DocumentSnapshot {
  return committedSnapshot(ref, undefined, undefined, undefined, new Set());
}

/**
 * What the ledger asks of a snapshot (exists, id, ref, data, get, the update time), for a document whose fields
 * are known without reading it. `data()` gives a copy each time, as the SDK's snapshots do. A field set to the
 * server's time is there, but reading its value throws NotRemembered: Firestore does not answer it with the
 * commit (the emulator's is not the commit's time), and nothing the ledger decides may rest on a guess.
 */
function committedSnapshot(
  ref: DocumentReference,
  fields: DocumentData | undefined,
  updateTime: Timestamp | undefined,
  createTime: Timestamp | undefined,
  unknownFields: ReadonlySet<string>,
): DocumentSnapshot {
  const notKnown = (field: string) => new NotRemembered(`${ref.path}.${field} was set to the server's time`);
  const snapshot = {
    ref,
    id: ref.id,
    exists: fields !== undefined,
    updateTime,
    createTime,
    readTime: undefined,
    data: () => {
      if (fields === undefined) return undefined;
      const data = copyOf(fields);
      for (const field of unknownFields)
        Object.defineProperty(data, field, {
          enumerable: true,
          get: () => {
            throw notKnown(field);
          },
        });
      return data;
    },
    get: (field: unknown) => {
      if (typeof field !== "string") throw new TypeError("a remembered document is read by dotted field names only");
      if (unknownFields.has(field.split(".")[0])) throw notKnown(field);
      let value: unknown = fields;
      for (const part of field.split(".")) {
        if (value === null || typeof value !== "object" || !Object.prototype.hasOwnProperty.call(value, part))
          return undefined;
        value = (value as Record<string, unknown>)[part];
      }
      return copyOf(value);
    },
  };
  if (fields !== undefined) contents.set(snapshot, { fields, unknownFields });
  return snapshot as unknown as DocumentSnapshot;
}

/** A remembered document's fields as kept (the next commit's afterUpdate starts from them). */
const contents = new WeakMap<object, { fields: DocumentData; unknownFields: ReadonlySet<string> }>();

/** Maps and arrays copied; Timestamps and other values kept (they are immutable). */
function copyOf<V>(value: V): V {
  if (Array.isArray(value)) return value.map(copyOf) as V;
  if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, copyOf(item)])) as V;
  return value;
}
