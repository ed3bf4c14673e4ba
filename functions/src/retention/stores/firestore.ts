/**
 * Retention in Firestore: the documents of a collection whose timestamp is
 * past the policy's age (and that meet its conditions), oldest first. A
 * `delete` policy goes through the delete path (firestore-delete.ts); a
 * `release_hold` or `expire_lot` policy hands each hold or lot to its owner,
 * never deleting it.
 */
import type { Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { expireDueLot } from "../../credits";
import { deleteMatching } from "../firestore-delete";
import { cutoff, type FirestorePolicy } from "../policies";
import type { Budget, Cursor, PolicyOutcome, TtlDeps } from "../runner";

/** Applies one Firestore policy from `resumeFrom`; returns where it stopped (null when done or not resumable). */
export async function applyFirestorePolicy(
  deps: TtlDeps,
  policy: FirestorePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  return policy.action === "delete"
    ? deleteMatching(deps, matchingQuery(deps, policy).select(), policy.keepReferencedBy, budget, outcome)
    : releaseMatching(deps, policy, resumeFrom, budget, outcome);
}

/** The policy's documents, oldest first, with the document id breaking ties (the cursor's order). */
function matchingQuery(deps: TtlDeps, policy: FirestorePolicy): Query {
  const { FieldPath } = require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
  let query: Query = deps.db.collection(policy.collection);
  for (const condition of policy.where) query = query.where(condition.field, condition.op, condition.value);
  return query
    .where(policy.timestampField, "<", cutoff(deps.clock.now(), policy.ageMs))
    .orderBy(policy.timestampField)
    .orderBy(FieldPath.documentId());
}

/**
 * Holds are released page by page through `releaseExpiredHold`, lots expired
 * through `expireLot` (a transaction each, a few at a time), following a
 * cursor (timestamp, document id) so one whose release failed is not retried
 * in a loop; the cursor is saved when the budget runs out.
 */
async function releaseMatching(
  deps: TtlDeps,
  policy: FirestorePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  const { Timestamp } = require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
  // Only references and the cursor's field are needed: each release reads the hold in its own transaction.
  const query = matchingQuery(deps, policy).select(policy.timestampField);
  let cursor = resumeFrom;
  for (;;) {
    if (budget.exhausted()) return cursor;
    const page = cursor
      ? query.startAfter(new Timestamp(cursor.seconds ?? 0, cursor.nanoseconds ?? 0), cursor.id)
      : query;
    const snapshot = await page.limit(deps.pageSize).get();
    budget.page();
    outcome.pages += 1;
    outcome.matched += snapshot.size;
    await releaseAll(deps, policy, snapshot.docs, outcome);
    const last = snapshot.docs[snapshot.docs.length - 1];
    if (last) cursor = cursorOf(last, policy.timestampField);
    if (snapshot.size < deps.pageSize) {
      outcome.done = true;
      return null;
    }
  }
}

function cursorOf(doc: QueryDocumentSnapshot, field: string): Cursor {
  const value = doc.get(field) as { seconds: number; nanoseconds: number } | undefined;
  return value ? { seconds: value.seconds, nanoseconds: value.nanoseconds, id: doc.id } : { id: doc.id };
}

async function releaseAll(
  deps: TtlDeps,
  policy: FirestorePolicy,
  docs: QueryDocumentSnapshot[],
  outcome: PolicyOutcome,
): Promise<void> {
  const concurrency = deps.releaseConcurrency ?? 8;
  const settle = policy.action === "expire_lot" ? (deps.expireLot ?? expireDueLot) : deps.releaseExpiredHold;
  let next = 0;
  const worker = async () => {
    while (next < docs.length) {
      const doc = docs[next++];
      try {
        await settle(deps.db, doc.id, deps.clock);
        outcome.applied += 1;
      } catch {
        outcome.skipped += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, docs.length) }, worker));
}
