/**
 * What must hold after every step of the simulation (PRODUCT.md invariants
 * 1, 4, 5, 10–14), each checker precise enough to fail only on a real
 * violation. `observe` first turns what the step wrote into the deliveries
 * the platform would now owe (mirror and audit events per ledger version).
 */
import assert from "node:assert/strict";
import { AssertionError } from "node:assert";
import type { Table } from "@lancedb/lancedb";
import { searchKnowledge } from "../../functions/src/embeddings/search";
import { tableName } from "../../functions/src/embeddings/store";
import { dlqOf, streamOf } from "../../functions/src/jobs/registry";
import { holdIdOf } from "../../functions/src/jobs/job";
import { assertLedgerInvariants, assertRememberedAsStored, ledgerOf } from "../support/credits";
import type { World } from "./world";

type Data = Record<string, unknown>;
type Entry = Data & { id: string };

const millis = (value: unknown): number | undefined =>
  value && typeof value === "object" && "toMillis" in value ? (value as { toMillis(): number }).toMillis() : undefined;

/** Turns ledger versions written since the last look into the mirror and audit deliveries the triggers would owe. */
export async function observe(w: World): Promise<void> {
  for (const user of w.users) {
    const seen = w.seenVersions.get(user.uid) ?? 0;
    const entries = (await ledgerOf(user.uid)).filter((entry) => Number(entry.ledger_version) > seen);
    let previous: Entry | undefined;
    for (const entry of entries) {
      const version = Number(entry.ledger_version);
      const balance = Number(entry.balance_after);
      const held = Number(entry.held_after);
      w.mirrorDeliveries.push({
        uid: user.uid,
        state: { balance, held, available: balance - held, version, updated_at: w.clock.now().getTime() },
      });
      // Every ledger write moves the document's updated_at with its updated_by (what the audit's actor rule reads);
      // the version stands in for the server timestamp, which the fixed clock would make equal across writes.
      const state = (e: Entry) => ({
        credits_balance: Number(e.balance_after),
        credits_held: Number(e.held_after),
        ledger_version: Number(e.ledger_version),
        updated_by: String(e.actor),
        updated_at: { seconds: Number(e.ledger_version), nanoseconds: 0 },
      });
      w.auditDeliveries.push({
        eventId: `sim_${user.uid}_v${version}`,
        uid: user.uid,
        actor: String(entry.actor),
        before: previous ? state(previous) : undefined,
        after: state(entry),
      });
      previous = entry;
      w.seenVersions.set(user.uid, Math.max(w.seenVersions.get(user.uid) ?? 0, version));
    }
  }
}

/** Runs every checker; returns the violations found (empty: all hold). */
export async function checkAll(w: World): Promise<string[]> {
  const found = [...w.violations];
  w.violations = [];
  const checkers: Array<[string, () => Promise<void>]> = [
    ["ledger", () => settled(() => checkLedgers(w))],
    ["jobs", () => settled(() => checkJobs(w))],
    ["allowances", () => checkAllowances(w)],
    ["queue", () => checkQueueAnswers(w)],
    ["mirror", () => checkMirrors(w)],
    ["audit", () => checkAudit(w)],
    ["knowledge", () => checkKnowledge(w)],
    ["providers", () => checkProviders(w)],
    ["payments", () => checkPayments(w)],
    ["memory", () => checkMemory(w)],
  ];
  if (w.after.swept) checkers.push(["sweep", () => checkSweep(w)]);
  const results = await Promise.allSettled(checkers.map(([, check]) => check()));
  results.forEach((result, index) => {
    if (result.status === "rejected") {
      const reason =
        result.reason instanceof AssertionError
          ? result.reason.message
          : `checker failed: ${String(result.reason instanceof Error ? result.reason.stack : result.reason)}`;
      found.push(`[${checkers[index][0]}] ${reason}`);
    }
  });
  w.after.swept = false;
  w.after.sweptWithRedis = false;
  w.after.healthChecked = false;
  w.after.lostAndSwept = [];
  return found;
}

/**
 * A state check reads documents one after another, so a transaction committed between two reads (the functions
 * emulator's own triggers, e.g. onUserDeleted, run beside the sim) can tear what it sees. Such a check counts only if
 * it still fails once those writes have settled (polled, with a deadline); a broken ledger or job stays broken.
 */
async function settled(check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() >= deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * Issue 13, per Stripe payment: credits granted − clawed back + reinstated = what the rules owe for the events
 * the webhook has been told (each at least once, in whatever order): nothing before the paid completion; after
 * it, the pack less floor(credits × refunded / amount), or nothing while a dispute's funds are withdrawn. Debt
 * ≥ 0 and Σ lots.remaining − debt = balance are checked with the ledger (assertLedgerInvariants).
 */
async function checkPayments(w: World): Promise<void> {
  const byUser = new Map<string, Entry[]>();
  for (const uid of new Set(w.payments.map((payment) => payment.uid))) byUser.set(uid, await ledgerOf(uid));
  for (const payment of w.payments) {
    const told = payment.delivered;
    const lost =
      told.withdrawn && !told.reinstated
        ? payment.credits
        : Math.floor((payment.credits * told.refunded) / payment.amount);
    const owed = told.paid ? payment.credits - lost : 0;
    const moved = (byUser.get(payment.uid) ?? [])
      .filter((entry) => {
        const metadata = (entry.metadata ?? {}) as Data;
        return entry.payment_id === payment.id || (entry.type === "purchase" && metadata.payment_id === payment.id);
      })
      .reduce((sum, entry) => sum + Number(entry.amount), 0);
    assert.equal(
      moved,
      owed,
      `payment ${payment.id} of ${payment.uid}: granted − clawed back + reinstated = ${moved}, the rules owe ${owed} ` +
        `(told: ${JSON.stringify(told)})`,
    );
  }
}

/**
 * What each instance remembers of a user (credits/committed-state.ts) is exactly what Firestore holds at the
 * update times it remembers; older is allowed, since the next spend's commit fails on it.
 */
async function checkMemory(w: World): Promise<void> {
  for (const store of [w.db, w.otherInstance])
    for (const user of w.users) await assertRememberedAsStored(user.uid, store);
}

/** Invariant 1/3: balance = Σ ledger, held = Σ open holds, nothing negative, versions contiguous. */
async function checkLedgers(w: World): Promise<void> {
  // A deleted user's account is closed, not erased: its ledger stays whole and continues when the user is re-created.
  await Promise.all(w.users.map((user) => assertLedgerInvariants(user.uid)));
}

/**
 * Issue 12: a period's allowance is granted at most once per user (entries keyed `allowance:{uid}:{period}`), and
 * so is its rollover (`rollover:{uid}:{period}`); an upgrade's top-up is keyed by its own request.
 */
async function checkAllowances(w: World): Promise<void> {
  for (const user of w.users) {
    const keys = (await ledgerOf(user.uid))
      .map((entry) => String(entry.idempotency_key))
      .filter((key) => key.startsWith("allowance:") || key.startsWith("rollover:"));
    const repeated = keys.filter((key, index) => keys.indexOf(key) !== index);
    assert.deepEqual(repeated, [], `${user.uid}: an allowance or rollover granted twice for one period`);
  }
}

/** Invariants 5/10: a job's hold is placed once and settled at most once; succeeded ⇒ one capture equal to its cost. */
async function checkJobs(w: World): Promise<void> {
  if (w.jobs.length === 0) return;
  const ledgers = new Map<string, Entry[]>();
  for (const uid of new Set(w.jobs.map((job) => job.uid))) ledgers.set(uid, await ledgerOf(uid));
  const snapshots = await w.db.getAll(...w.jobs.map((job) => w.db.collection("jobs").doc(job.id)));
  const holds = await w.db.getAll(
    ...snapshots.map((snapshot) => w.db.collection("credit_holds").doc(holdIdOf(snapshot.id))),
  );
  snapshots.forEach((snapshot, index) => {
    const job = snapshot.data();
    assert.ok(job, `job ${snapshot.id} exists`);
    // The hold the job was created with (a poisoned job's hold_id names no hold; its real hold must stay open).
    const holdId = holdIdOf(snapshot.id);
    const entries = (ledgers.get(String(job.user_id)) ?? []).filter((entry) => entry.hold_id === holdId);
    const placed = entries.filter((entry) => entry.type === "hold");
    const settled = entries.filter((entry) => ["capture", "release", "expire"].includes(String(entry.type)));
    const status = String(job.status);
    assert.equal(placed.length, 1, `job ${snapshot.id}: one hold entry`);
    assert.ok(settled.length <= 1, `job ${snapshot.id} (${status}): hold settled ${settled.length} times`);
    const hold = holds[index].data() ?? {};
    if (status === "succeeded") {
      assert.equal(
        settled.length,
        1,
        `job ${snapshot.id} succeeded with cost ${String(job.cost)} but its hold was never settled`,
      );
      assert.equal(
        settled[0].type,
        "capture",
        `job ${snapshot.id} succeeded with cost ${String(job.cost)} but its hold was settled by ${String(settled[0].type)}, nothing captured`,
      );
      assert.equal(0 - Number(settled[0].amount), Number(job.cost), `job ${snapshot.id}: captured = job cost`);
      assert.equal(hold.status, "captured", `job ${snapshot.id}: hold captured`);
    } else if (status === "failed" || status === "cancelled") {
      assert.equal(settled.length, 1, `job ${snapshot.id} (${status}): hold settled exactly once`);
      assert.ok(
        ["release", "expire"].includes(String(settled[0].type)),
        `job ${snapshot.id} (${status}): hold returned, not ${String(settled[0].type)}`,
      );
    }
  });
}

/** Invariant 11: the first answer written back to a queued op never changes (retention may remove the entry). */
async function checkQueueAnswers(w: World): Promise<void> {
  if (w.queueOps.length === 0) return;
  const queues = ((await w.rtdb.ref("operation_queues").once("value")).val() ?? {}) as Record<
    string,
    Record<string, Data>
  >;
  for (const op of w.queueOps) {
    const node = queues[op.uid]?.[op.opId];
    if (!node || typeof node.status !== "string") continue;
    const result = node.result as { transaction_id?: string } | null | undefined;
    const error = node.error as { code?: string } | null | undefined;
    const answer = `${node.status} ${result?.transaction_id ?? error?.code ?? ""}`;
    op.answer ??= answer;
    assert.equal(
      answer,
      op.answer,
      `queued op ${op.opId} of ${op.uid} was answered "${op.answer}" and is now "${answer}"`,
    );
  }
}

/** Invariant 4: once every delivery for a user has arrived at least once, the mirror equals Firestore. */
async function checkMirrors(w: World): Promise<void> {
  const mirrors = ((await w.rtdb.ref("user_balances").once("value")).val() ?? {}) as Record<string, Data>;
  for (const user of w.users) {
    if (user.everDeleted || w.mirrorDeliveries.some((delivery) => delivery.uid === user.uid)) continue;
    const doc = (await w.db.collection("users").doc(user.uid).get()).data() as
      { ledger_version: number; credits_balance: number; credits_held: number } | undefined;
    if (!doc || Number(doc.ledger_version) !== (w.seenVersions.get(user.uid) ?? 0)) continue;
    const mirror = mirrors[user.uid];
    assert.ok(mirror, `mirror of ${user.uid} missing after every delivery arrived`);
    assert.deepEqual(
      { version: mirror.version, balance: mirror.balance, held: mirror.held },
      { version: doc.ledger_version, balance: doc.credits_balance, held: doc.credits_held },
      `mirror of ${user.uid} converged to Firestore`,
    );
  }
}

/** One audit entry per delivered event, naming the actor that made the change. */
async function checkAudit(w: World): Promise<void> {
  if (w.deliveredAudits.length === 0) return;
  const snapshots = await w.db.getAll(
    ...w.deliveredAudits.map((delivery) => w.db.collection("audit_logs").doc(delivery.eventId)),
  );
  snapshots.forEach((snapshot, index) => {
    const delivery = w.deliveredAudits[index];
    assert.ok(snapshot.exists, `audit entry for ${delivery.eventId} exists`);
    assert.equal(snapshot.get("actor"), delivery.actor, `audit entry ${delivery.eventId}: actor`);
  });
}

/**
 * Invariants 6/12: LanceDB rows equal what each source record says; the newest
 * applied request is what is indexed; a deleted source with nothing newer
 * applied has no rows and is not searchable.
 */
async function checkKnowledge(w: World): Promise<void> {
  if (w.messages.length === 0) return;
  const connection = await w.lance();
  const name = tableName("knowledge_text", w.embedder.modelId, w.embedder.dimension);
  const table: Table | undefined = (await connection.tableNames()).includes(name)
    ? await connection.openTable(name)
    : undefined;
  const rows = table
    ? ((await table.query().select(["source", "content_hash", "requested_at"]).toArray()) as Array<{
        source: string;
        content_hash: string;
        requested_at: number;
      }>)
    : [];
  for (const source of w.sources) {
    const record = (await w.db.collection("knowledge_sources").doc(source.id).get()).data();
    const mine = rows.filter((row) => row.source === source.id);
    const chunkCount = typeof record?.chunk_count === "number" ? record.chunk_count : 0;
    assert.equal(
      mine.length,
      chunkCount,
      `source ${source.id}: LanceDB has ${mine.length} rows, its record says ${chunkCount} (status ${String(record?.status)})`,
    );
    for (const row of mine)
      assert.equal(row.content_hash, record?.content_hash, `source ${source.id}: rows' content hash = record's`);
    if (source.deletedGeneration > 0 && source.newestAppliedGeneration < source.deletedGeneration) {
      assert.notEqual(
        record?.status,
        "indexed",
        `source ${source.id} deleted at generation ${source.deletedGeneration} (nothing newer applied) is indexed again (generation ${String(record?.live_generation)})`,
      );
      assert.equal(mine.length, 0, `source ${source.id} deleted but has rows`);
      if (table && source.lastText) {
        const hits = await searchKnowledge(
          { db: w.db, lance: w.lance, provider: w.embedder, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } },
          { query: source.lastText, k: 10 },
        );
        assert.ok(
          !hits.results.some((hit) => hit.source_id === source.id),
          `deleted source ${source.id} is searchable`,
        );
      }
    } else if (record?.status === "indexed") {
      assert.equal(
        record.requested_at,
        source.newestApplied,
        `source ${source.id}: indexed request ${String(record.requested_at)} is not the newest applied (${source.newestApplied}): an older message won`,
      );
    }
  }
}

/** Invariants 13/14 for health: an open alert a provider points at exists; a check reaches every provider and resets due quotas. */
async function checkProviders(w: World): Promise<void> {
  if (w.providers.length === 0) return;
  const now = w.clock.now().getTime();
  for (const provider of w.providers) {
    const health = (await w.db.collection("model_provider_health").doc(provider.name).get()).data();
    const openAlert: unknown = health?.open_alert_id;
    if (typeof openAlert === "string") {
      const alert = await w.db.collection("model_router_alerts").doc(openAlert).get();
      assert.ok(
        alert.exists,
        `provider ${provider.name} (${String(health?.status)}) points at open alert ${openAlert}, which is gone (deleted by retention?)`,
      );
    }
    if (w.after.healthChecked) {
      assert.equal(
        millis(health?.last_check),
        now,
        `provider ${provider.name} was not checked by the health check run at ${new Date(now).toISOString()} (one provider's failure stopped the others?)`,
      );
      if (w.after.lastProbe.get(provider.name) === true)
        assert.notEqual(health?.status, "down", `provider ${provider.name} answered its probe but stays down`);
    }
  }
  if (w.after.healthChecked) {
    const quotas = await w.db.getAll(
      ...w.providers.map((provider) => w.db.collection("model_quotas").doc(`${provider.name}_${provider.name}-model`)),
    );
    for (const quota of quotas)
      assert.ok(
        (millis(quota.get("reset_at")) ?? 0) > now,
        `quota ${quota.id} due at ${String(millis(quota.get("reset_at")))} was not reset by the health check`,
      );
  }
}

/**
 * Invariant 14 for the sweeper: after a sweep, no job past its deadline is
 * still open (one bad job must not stop the others, and a deleted owner is no
 * excuse: the account is closed, not erased).
 * Invariant 7 for streams: a queued job dispatched to a stream that Redis lost
 * is back on it (or in its DLQ) after a sweep with Redis up. A job this step
 * lost and swept must be back at once; any other queued, dispatched job found
 * missing after such a sweep gets one more sweep with Redis up (a dispatch
 * of the functions emulator's own trigger may have written `dispatched` after
 * the sweep read the jobs).
 */
async function checkSweep(w: World): Promise<void> {
  if (w.jobs.length === 0) return;
  const now = w.clock.now().getTime();
  const snapshots = await w.db.getAll(...w.jobs.map((job) => w.db.collection("jobs").doc(job.id)));
  const inStream = w.after.sweptWithRedis && w.redisUp ? await streamJobIds(w) : undefined;
  for (const [index, snapshot] of snapshots.entries()) {
    const job = snapshot.data() ?? {};
    const open = job.status === "queued" || job.status === "running";
    const model = w.jobs[index];
    if (open && (millis(job.deadline_at) ?? Infinity) <= now) {
      const quarantine = job.quarantine as Data | undefined;
      // A job nothing can finish is set aside with its reason, and must not hold up the jobs behind it.
      if (model.poisoned) {
        assert.ok(
          typeof quarantine?.reason === "string",
          `job #${index} ${snapshot.id} cannot be finished (its hold_id names no hold), is past its deadline and was not quarantined by a sweep`,
        );
        continue;
      }
      assert.fail(
        `job #${index} ${snapshot.id} is past its deadline and still ${String(job.status)} after a sweep${quarantine ? ` (quarantined: ${String(quarantine.error)})` : ""}`,
      );
    }
    const dispatched = (job.dispatch as Data | undefined)?.state === "dispatched";
    if (!inStream || job.status !== "queued" || !dispatched || model.type !== "podcast") continue;
    if (inStream.has(snapshot.id)) {
      model.missingSince = undefined;
      continue;
    }
    assert.ok(
      !w.after.lostAndSwept.includes(snapshot.id),
      `job #${index} ${snapshot.id} is queued and dispatched, Redis lost its stream entry, and a sweep with Redis up did not send it again: it will fail at its deadline`,
    );
    const firstMissing = model.missingSince === undefined;
    model.missingSince ??= now;
    assert.ok(
      firstMissing,
      `job #${index} ${snapshot.id} is queued and dispatched but still missing from its stream at a second sweep with Redis up: lost, it will fail at its deadline`,
    );
  }
}

async function streamJobIds(w: World): Promise<Set<string>> {
  const stream = streamOf("podcast");
  const entries = await w.redis.run(async (client) => [
    ...(await client.xrange(stream, "-", "+")),
    ...(await client.xrange(dlqOf(stream), "-", "+")),
  ]);
  const ids = new Set<string>();
  for (const [, fields] of entries) {
    const at = fields.indexOf("job_id");
    if (at >= 0 && fields[at + 1]) ids.add(fields[at + 1]);
  }
  return ids;
}
