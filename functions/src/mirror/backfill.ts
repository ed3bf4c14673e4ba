/**
 * Rebuilds every RTDB balance mirror from Firestore. Idempotent and safe while
 * triggers run: it goes through the same version-guarded write, so it never
 * replaces a newer mirror with an older state.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { balanceStateOf, mirrorBalance, withNextExpiry, type MirrorDeps, type MirrorOutcome } from "./balance";

export interface BackfillProgress {
  scanned: number;
  written: number;
  current: number;
  lastUid: string | null;
}

export async function backfillMirrors(
  deps: MirrorDeps & { db: Firestore },
  options: { pageSize?: number; onProgress?: (progress: BackfillProgress) => void } = {},
): Promise<BackfillProgress> {
  const pageSize = options.pageSize ?? 300;
  const { FieldPath } = firestoreValues();
  const progress: BackfillProgress = { scanned: 0, written: 0, current: 0, lastUid: null };
  for (;;) {
    let query = deps.db.collection("users").orderBy(FieldPath.documentId()).limit(pageSize);
    if (progress.lastUid) query = query.startAfter(progress.lastUid);
    const page = await query.get();
    if (page.empty) break;
    const outcomes: MirrorOutcome[] = await Promise.all(
      page.docs.map(async (doc) => {
        const updatedAt = doc.updateTime ? doc.updateTime.toMillis() : Date.now();
        const state = balanceStateOf(doc.data(), updatedAt);
        return mirrorBalance(deps, doc.id, state && (await withNextExpiry(deps.db, doc.id, state)));
      }),
    );
    progress.scanned += page.size;
    progress.written += outcomes.filter((outcome) => outcome === "written").length;
    progress.current += outcomes.filter((outcome) => outcome === "stale").length;
    progress.lastUid = page.docs[page.docs.length - 1].id;
    options.onProgress?.(progress);
    if (page.size < pageSize) break;
  }
  return progress;
}
