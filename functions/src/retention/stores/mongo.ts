/** Retention in MongoDB: documents whose expiry date has passed, deleted page by page. */
import { cutoff, type MongoPolicy } from "../policies";
import type { Budget, PolicyOutcome, TtlDeps } from "../runner";

/** Applies one MongoDB policy; no cursor: deleted documents leave the query. */
export async function applyMongoPolicy(
  deps: TtlDeps,
  policy: MongoPolicy,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<void> {
  if (!deps.mongo) throw new Error("no MongoDB given");
  const collection = (await deps.mongo()).collection(policy.collection);
  const expired = { [policy.timestampField]: { $lt: cutoff(deps.clock.now(), policy.ageMs) } };
  for (;;) {
    if (budget.exhausted()) return;
    const ids = (
      await collection
        .find(expired, { projection: { _id: 1 } })
        .limit(deps.pageSize)
        .toArray()
    ).map((doc) => doc._id);
    budget.page();
    outcome.pages += 1;
    outcome.matched += ids.length;
    if (ids.length > 0) {
      // The expiry condition is repeated so a document extended since it was read stays.
      const result = await collection.deleteMany({ _id: { $in: ids }, ...expired });
      outcome.applied += result.deletedCount;
      outcome.skipped += ids.length - result.deletedCount;
    }
    if (ids.length < deps.pageSize) {
      outcome.done = true;
      return;
    }
  }
}
