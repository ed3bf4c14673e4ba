/**
 * The Firestore delete path of retention: batches of ≤ 500 deletes, each
 * delete with a `lastUpdateTime` precondition so a document changed since it
 * was read (and so perhaps no longer matching) is skipped, never deleted; a
 * failed batch is redone one document at a time through a BulkWriter; a
 * document something live still points at (`keepReferencedBy`) is kept.
 */
import type { BulkWriter, Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
import type { FirestorePolicy } from "./policies";
import type { Budget, PolicyOutcome, TtlDeps } from "./runner";

/**
 * Deletes stream: one query reads up to `pagesPerQuery` pages of bare
 * references (a query's cost is mostly fixed, so few long scans beat many
 * short ones). Each page becomes one batch of ≤ 500 deletes, committed while
 * the next page is read (at most `batchesInFlight` at once); every delete has
 * a `lastUpdateTime` precondition. A batch that fails (one changed document
 * fails the whole batch) is redone document by document through a
 * BulkWriter, where a failed precondition skips just that document.
 * Deleted documents leave the query's results, so the next scan starts from
 * the beginning again and no cursor is needed; a run cut by the budget
 * resumes at this policy. `query` gives the policy's matching documents,
 * oldest first (references only).
 */
export async function deleteMatching(
  deps: TtlDeps,
  query: Query,
  keepReferencedBy: FirestorePolicy["keepReferencedBy"],
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<null> {
  const pageSize = Math.min(deps.pageSize, 500);
  const scanLimit = pageSize * (deps.pagesPerQuery ?? 50);
  const inFlight = new Set<Promise<void>>();
  let fallback: BulkWriter | undefined;

  const redoOneByOne = async (docs: QueryDocumentSnapshot[]) => {
    if (!fallback) {
      fallback = deps.db.bulkWriter(deps.writerOptions);
      // gRPC 9 = FAILED_PRECONDITION: the document changed since it was read, so it is not retried.
      fallback.onWriteError((error) => (error.code as number) !== 9 && error.failedAttempts < 5);
    }
    const writer = fallback;
    const results = docs.map((doc) =>
      writer.delete(doc.ref, { lastUpdateTime: doc.updateTime }).then(
        () => (outcome.applied += 1),
        () => (outcome.skipped += 1),
      ),
    );
    await writer.flush();
    await Promise.all(results);
  };

  const commit = async (matched: QueryDocumentSnapshot[]) => {
    const docs = await unreferenced(deps, keepReferencedBy, matched);
    outcome.skipped += matched.length - docs.length;
    if (docs.length === 0) return;
    const batch = deps.db.batch();
    for (const doc of docs) batch.delete(doc.ref, { lastUpdateTime: doc.updateTime });
    try {
      await batch.commit();
      outcome.applied += docs.length;
    } catch {
      await redoOneByOne(docs);
    }
  };

  const send = async (docs: QueryDocumentSnapshot[]) => {
    while (inFlight.size >= (deps.batchesInFlight ?? 4)) await Promise.race(inFlight);
    const pending: Promise<void> = commit(docs).finally(() => inFlight.delete(pending));
    inFlight.add(pending);
  };

  try {
    for (;;) {
      if (budget.exhausted()) return null;
      const appliedBefore = outcome.applied;
      let read = 0;
      let cut = false;
      let page: QueryDocumentSnapshot[] = [];
      const documents = query.limit(scanLimit).stream() as unknown as AsyncIterable<QueryDocumentSnapshot>;
      for await (const doc of documents) {
        read += 1;
        outcome.matched += 1;
        page.push(doc);
        if (page.length === pageSize) {
          await send(page);
          page = [];
          budget.page();
          outcome.pages += 1;
          if (budget.exhausted()) {
            cut = true;
            break;
          }
        }
      }
      if (page.length > 0 || read === 0) {
        if (page.length > 0) await send(page);
        budget.page();
        outcome.pages += 1;
      }
      await Promise.all(inFlight);
      if (cut) return null;
      // Everything read this scan was left alone: rescanning would find the same documents.
      if (read < scanLimit || outcome.applied === appliedBefore) {
        outcome.done = true;
        return null;
      }
    }
  } finally {
    await Promise.allSettled(inFlight);
    await fallback?.close();
  }
}

/** Firestore's limit on the values of one `in` filter. */
const IN_LIMIT = 30;

/**
 * The documents of a page no live document points at (see `keepReferencedBy`).
 * The pointer is read after the page: a pointer set before this read keeps
 * its document; one set later must come with a write to the document itself
 * (health resolves or creates the alert in the transaction that moves it),
 * which fails the delete's `lastUpdateTime` precondition.
 */
async function unreferenced(
  deps: TtlDeps,
  guard: FirestorePolicy["keepReferencedBy"],
  docs: QueryDocumentSnapshot[],
): Promise<QueryDocumentSnapshot[]> {
  if (!guard || docs.length === 0) return docs;
  const referenced = new Set<string>();
  for (let start = 0; start < docs.length; start += IN_LIMIT) {
    const ids = docs.slice(start, start + IN_LIMIT).map((doc) => doc.id);
    const pointers = await deps.db.collection(guard.collection).where(guard.field, "in", ids).select(guard.field).get();
    for (const pointer of pointers.docs) referenced.add(String(pointer.get(guard.field)));
  }
  return docs.filter((doc) => !referenced.has(doc.id));
}
