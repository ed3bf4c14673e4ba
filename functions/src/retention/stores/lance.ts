/** Retention in LanceDB: every table compacted and its versions older than the policy's age cleaned up. */
import { cutoff, type LancePolicy } from "../policies";
import type { Budget, PolicyOutcome, TtlDeps } from "../runner";

/** Compacts every table; the budget is checked between tables. */
export async function applyLancePolicy(
  deps: TtlDeps,
  policy: LancePolicy,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<void> {
  if (!deps.lance) throw new Error("no LanceDB given");
  const connection = await deps.lance();
  const olderThan = cutoff(deps.clock.now(), policy.ageMs);
  for (const name of await connection.tableNames()) {
    // Compaction of one table is not resumable mid-way, so the budget is checked between tables.
    if (budget.exhausted()) return;
    const table = await connection.openTable(name);
    try {
      const stats = await table.optimize({ cleanupOlderThan: olderThan });
      outcome.matched += 1;
      outcome.applied += stats.prune.oldVersionsRemoved;
    } finally {
      table.close();
    }
    budget.page();
    outcome.pages += 1;
  }
  outcome.done = true;
}
