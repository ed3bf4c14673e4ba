/**
 * Retention in the Realtime Database: queue entries (`{path}/{parent}/{child}`)
 * whose status is final and whose timestamp is old, page by page over the
 * parents, each removed only if it still equals what was read.
 */
import { isDeepStrictEqual } from "node:util";
import type { Reference } from "firebase-admin/database";
import { cutoff, type RtdbQueuePolicy } from "../policies";
import type { Budget, Cursor, PolicyOutcome, TtlDeps } from "../runner";

/** Applies one RTDB queue policy from `resumeFrom` (a parent key); returns where it stopped. */
export async function applyRtdbPolicy(
  deps: TtlDeps,
  policy: RtdbQueuePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  if (!deps.rtdb) throw new Error("no Realtime Database given");
  const root = deps.rtdb().ref(policy.path);
  const oldest = cutoff(deps.clock.now(), policy.ageMs).getTime();
  let lastKey = resumeFrom?.id;
  for (;;) {
    if (budget.exhausted()) return lastKey ? { id: lastKey } : null;
    // startAt + skip rather than startAfter: the local RTDB substitute knows only the former.
    const query = lastKey
      ? root
          .orderByKey()
          .startAt(lastKey)
          .limitToFirst(deps.pageSize + 1)
      : root.orderByKey().limitToFirst(deps.pageSize);
    const snapshot = await query.once("value");
    budget.page();
    outcome.pages += 1;
    const parents = Object.entries((snapshot.val() ?? {}) as Record<string, Record<string, unknown>>)
      .filter(([key]) => key !== lastKey)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const removals: Array<{ path: string; read: unknown }> = [];
    for (const [parent, entries] of parents) {
      for (const [child, entry] of Object.entries(entries ?? {})) {
        if (typeof entry !== "object" || entry === null) continue;
        const { status, [policy.timestampField]: at } = entry as Record<string, unknown>;
        if (typeof status === "string" && policy.statusIn.includes(status) && typeof at === "number" && at < oldest) {
          removals.push({ path: `${parent}/${child}`, read: entry });
        }
      }
    }
    outcome.matched += removals.length;
    for (const { path, read } of removals) {
      try {
        if (await removeIfUnchanged(root.child(path), read)) outcome.applied += 1;
        else outcome.skipped += 1;
      } catch {
        outcome.skipped += 1; // one entry failing never stops the page (invariant 14)
      }
    }
    if (parents.length > 0) lastKey = parents[parents.length - 1][0];
    if (parents.length < deps.pageSize) {
      outcome.done = true;
      return null;
    }
  }
}

/**
 * Removes an RTDB entry only if it still equals what was read (invariant 13):
 * an entry rewritten since the page was read (say, re-queued under the same id)
 * stays. The check and the removal are one RTDB transaction. A null first guess
 * is answered with null: a no-op if the entry is gone, and if it is only not
 * cached, the server refuses the guess and the check runs on the real value.
 */
export async function removeIfUnchanged(ref: Reference, read: unknown): Promise<boolean> {
  let removed = false;
  const result = await ref.transaction(
    (current: unknown) => {
      removed = current !== null && isDeepStrictEqual(current, read);
      if (current === null) return null;
      return removed ? null : undefined;
    },
    undefined,
    false,
  );
  return result.committed && removed;
}
