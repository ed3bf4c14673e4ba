/**
 * Gives every user whose credits predate lots their `legacy` lot, holding the
 * balance (and what open holds reserve) as it is. The ledger does the same
 * lazily on a user's first change; this makes it happen for everyone.
 *
 * Idempotent and safe while traffic runs: each user is one transaction that
 * reads the user document and the legacy lot, the same documents a change
 * reads, so a spend and the backfill never both create the lot (one of the two
 * transactions retries and finds it). The user document is not written: the
 * lot's existence is what the ledger checks next.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { systemClock, type Clock } from "../shared/time";
import { readAccount, runCreditTransaction } from "./ledger";
import { lotWrites, readLots } from "./lots";

export interface LotBackfillProgress {
  scanned: number;
  /** Legacy lots created. */
  created: number;
  /** Users already in lots, or with nothing to put in one. */
  current: number;
  /** Users whose transaction failed (recorded, the others proceed); a later run retries them. */
  failed: number;
  lastUid: string | null;
}

export interface LotBackfillOptions {
  pageSize?: number;
  /** Users handled at once within a page. */
  concurrency?: number;
  onProgress?: (progress: LotBackfillProgress) => void;
  onFailure?: (uid: string, error: unknown) => void;
  clock?: Clock;
}

export async function backfillLots(db: Firestore, options: LotBackfillOptions = {}): Promise<LotBackfillProgress> {
  const pageSize = options.pageSize ?? 300;
  const concurrency = options.concurrency ?? 8;
  const clock = options.clock ?? systemClock;
  const { FieldPath } = firestoreValues();
  const progress: LotBackfillProgress = { scanned: 0, created: 0, current: 0, failed: 0, lastUid: null };
  for (;;) {
    let query = db.collection("users").orderBy(FieldPath.documentId()).select().limit(pageSize);
    if (progress.lastUid) query = query.startAfter(progress.lastUid);
    const page = await query.get();
    if (page.empty) break;
    const uids = page.docs.map((doc) => doc.id);
    let next = 0;
    const worker = async () => {
      while (next < uids.length) {
        const uid = uids[next++];
        try {
          if (await backfillUser(db, uid, clock)) progress.created += 1;
          else progress.current += 1;
        } catch (error) {
          progress.failed += 1;
          options.onFailure?.(uid, error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, uids.length) }, worker));
    progress.scanned += page.size;
    progress.lastUid = uids[uids.length - 1];
    options.onProgress?.({ ...progress });
    if (page.size < pageSize) break;
  }
  return progress;
}

/** Creates one user's legacy lot if they need one; true when it did. */
export async function backfillUser(db: Firestore, uid: string, clock: Clock = systemClock): Promise<boolean> {
  return runCreditTransaction(db, async (tx) => {
    const account = await readAccount(tx, db, uid);
    if (!account.exists || account.lotsReady) return false;
    const book = await readLots(tx, db, account, { ids: [], draw: 0 }, clock.now());
    const created = [...book.byId.values()].some((lot) => lot.changed);
    if (created) lotWrites(tx, book);
    return created;
  });
}
