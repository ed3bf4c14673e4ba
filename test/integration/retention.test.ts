import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Firestore } from "firebase-admin/firestore";
import { expireHolds } from "../../functions/src/jobs/expiry";
import {
  DEFAULT_RETENTION,
  retentionPolicies,
  type RetentionPolicy,
  type RetentionSettings,
} from "../../functions/src/retention/policies";
import { runTtlCleanup, type TtlDeps } from "../../functions/src/retention/runner";
import { newUid } from "../support/suite";
import { closeMongo, firestore, fixedClock, functionsRequire, lanceAt, mongo, realtimeDb } from "../support/stores";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function policy(name: string, settings: RetentionSettings = DEFAULT_RETENTION): RetentionPolicy {
  const found = retentionPolicies(settings).find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no policy ${name}`);
  return found;
}

function deps(
  db: Firestore,
  clock: { now(): Date },
  policies: RetentionPolicy[],
  extra: Partial<TtlDeps> = {},
): TtlDeps {
  return {
    db,
    clock,
    policies,
    releaseExpiredHold: expireHolds(),
    rtdb: realtimeDb,
    mongo,
    budgetMs: 60_000,
    pageSize: 500,
    stateId: newUid("ttl-state"),
    ...extra,
  };
}

async function exists(db: Firestore, collection: string, id: string): Promise<boolean> {
  return (await db.collection(collection).doc(id).get()).exists;
}

describe("integration: ttlCleanup retention policies", function () {
  this.timeout(60_000);
  const db = firestore();

  after(() => closeMongo());

  /** The Firestore delete policies: [policy, timestamp field, age, documents that must go, documents that must stay]. */
  interface Case {
    policy: string;
    collection: string;
    field: string;
    ageMs: number;
    extraGone?: Record<string, unknown>;
    extraKept?: Record<string, unknown>;
    settings?: RetentionSettings;
  }
  const cases: Case[] = [
    { policy: "routing_decisions", collection: "routing_decisions", field: "timestamp", ageMs: 30 * DAY },
    {
      policy: "acknowledged_alerts",
      collection: "model_router_alerts",
      field: "created_at",
      ageMs: 90 * DAY,
      extraGone: { acknowledged: true, resolved: true },
      extraKept: { acknowledged: false, resolved: true },
    },
    { policy: "processed_events", collection: "processed_events", field: "expire_at", ageMs: 0 },
    { policy: "idempotency_keys", collection: "idempotency_keys", field: "expire_at", ageMs: 0 },
    { policy: "provider_checks", collection: "model_provider_checks", field: "expire_at", ageMs: 0 },
    { policy: "stripe_events", collection: "stripe_events", field: "expire_at", ageMs: 0 },
    {
      policy: "audit_logs",
      collection: "audit_logs",
      field: "created_at",
      ageMs: 365 * DAY,
      settings: { ...DEFAULT_RETENTION, auditDays: 365 },
    },
  ];

  for (const c of cases) {
    it(`${c.policy}: when documents are just past the age${c.extraGone ? " and meet the condition" : ""}, then only those are deleted`, async () => {
      const clock = fixedClock();
      const now = clock.now().getTime();
      const tag = newUid(c.policy);
      const outside = new Date(now - c.ageMs - MINUTE);
      const inside = new Date(now - c.ageMs + MINUTE);
      const seeds: Array<[string, Record<string, unknown>, boolean]> = [
        [`${tag}-old`, { [c.field]: outside, ...c.extraGone }, true],
        [`${tag}-young`, { [c.field]: inside, ...c.extraGone }, false],
        [`${tag}-untimed`, { other: 1, ...c.extraGone }, false],
      ];
      if (c.extraKept) {
        seeds.push([`${tag}-old-unmatched`, { [c.field]: outside, ...c.extraKept }, false]);
        seeds.push([`${tag}-old-no-field`, { [c.field]: outside }, false]);
      }
      await Promise.all(
        seeds.map(([id, data]) =>
          db
            .collection(c.collection)
            .doc(id)
            .set({ tag, ...data }),
        ),
      );

      const outcome = await runTtlCleanup(deps(db, clock, [policy(c.policy, c.settings)]));

      assert.equal(outcome.complete, true);
      assert.ok(outcome.policies[0].applied >= 1, JSON.stringify(outcome));
      for (const [id, , gone] of seeds) {
        assert.equal(await exists(db, c.collection, id), !gone, `${id} should ${gone ? "be deleted" : "stay"}`);
      }
    });
  }

  it("acknowledged_alerts: when an old acknowledged alert is still open, or a provider's health still points at it, then it stays", async () => {
    const clock = fixedClock();
    const old = new Date(clock.now().getTime() - 91 * DAY);
    const tag = newUid("alerts");
    const alerts = db.collection("model_router_alerts");
    await alerts.doc(`${tag}-open`).set({ tag, created_at: old, acknowledged: true, resolved: false });
    await alerts.doc(`${tag}-pointed`).set({ tag, created_at: old, acknowledged: true, resolved: true });
    await alerts.doc(`${tag}-over`).set({ tag, created_at: old, acknowledged: true, resolved: true });
    await db
      .collection("model_provider_health")
      .doc(tag)
      .set({ provider: tag, status: "down", open_alert_id: `${tag}-pointed` });

    const outcome = await runTtlCleanup(deps(db, clock, [policy("acknowledged_alerts")]));

    assert.equal(outcome.complete, true);
    assert.equal(await exists(db, "model_router_alerts", `${tag}-open`), true, "an open alert is never deleted");
    assert.equal(
      await exists(db, "model_router_alerts", `${tag}-pointed`),
      true,
      "an alert health points at is never deleted",
    );
    assert.equal(
      await exists(db, "model_router_alerts", `${tag}-over`),
      false,
      "a resolved, acknowledged, old alert goes",
    );
    assert.ok(outcome.policies[0].skipped >= 1, JSON.stringify(outcome));
  });

  it("audit_logs: when the audit retention is 0 (the default), then no policy touches audit entries", async () => {
    assert.equal(
      retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 0 }).some((p) => p.name === "audit_logs"),
      false,
    );
    const id = newUid("audit");
    await db
      .collection("audit_logs")
      .doc(id)
      .set({ created_at: new Date(Date.now() - 10 * 365 * DAY) });
    await runTtlCleanup(
      deps(
        db,
        fixedClock(),
        retentionPolicies({ ...DEFAULT_RETENTION, auditDays: 0 }).filter(
          (p) => p.store === "firestore" && p.action === "delete",
        ),
      ),
    );
    assert.equal(await exists(db, "audit_logs", id), true);
  });

  it("expired_holds: when an open hold is past expires_at, then it is expired, its credits return to available, with one ledger entry; others stay", async () => {
    const clock = fixedClock();
    const now = clock.now().getTime();
    const uid = newUid("holder");
    await db.collection("users").doc(uid).set({ credits_balance: 100, credits_held: 35, ledger_version: 5 });
    const holds: Record<string, Record<string, unknown>> = {
      [`${uid}-expired`]: { status: "open", amount: 20, expires_at: new Date(now - MINUTE), job_id: "job-a" },
      [`${uid}-live`]: { status: "open", amount: 10, expires_at: new Date(now + MINUTE), job_id: "job-b" },
      [`${uid}-captured`]: { status: "captured", amount: 5, expires_at: new Date(now - DAY), job_id: "job-c" },
    };
    await Promise.all(
      Object.entries(holds).map(([id, hold]) =>
        db
          .collection("credit_holds")
          .doc(id)
          .set({ user_id: uid, created_at: new Date(now - DAY), ...hold }),
      ),
    );

    const run = () => runTtlCleanup(deps(db, clock, [policy("expired_holds")]));
    await run();
    // A second run (or a duplicate tick) must not settle the hold again.
    await run();

    const user = (await db.collection("users").doc(uid).get()).data() ?? {};
    assert.equal(user.credits_balance, 100);
    assert.equal(user.credits_held, 15);
    assert.equal(user.ledger_version, 6);
    assert.equal(user.credits_balance - user.credits_held, 85, "the 20 credits are available again");
    const status = async (id: string): Promise<unknown> =>
      (await db.collection("credit_holds").doc(id).get()).get("status");
    assert.equal(await status(`${uid}-expired`), "expired");
    assert.equal(await status(`${uid}-live`), "open");
    assert.equal(await status(`${uid}-captured`), "captured");
    const ledger = await db.collection("credit_transactions").where("user_id", "==", uid).get();
    assert.equal(ledger.size, 1);
    const entry = ledger.docs[0].data();
    assert.equal(entry.type, "expire");
    assert.equal(entry.amount, 0);
    assert.equal(entry.balance_after, 100);
    assert.equal(entry.held_after, 15);
    assert.equal(entry.idempotency_key, `expire:${uid}-expired`);
    assert.equal(entry.actor, "system:ttlCleanup");
    assert.equal(entry.hold_id, `${uid}-expired`);
    assert.equal(entry.job_id, "job-a");
  });

  it("expired_holds: when the hold action fails, then the hold stays open and is counted as skipped, never deleted", async () => {
    const clock = fixedClock();
    const uid = newUid("holder");
    const id = `${uid}-expired`;
    await db
      .collection("credit_holds")
      .doc(id)
      .set({ user_id: uid, status: "open", amount: 1, expires_at: new Date(clock.now().getTime() - MINUTE) });
    const failing = async (_db: Firestore, holdId: string) => {
      if (holdId === id) throw new Error("credits unavailable");
    };
    const outcome = await runTtlCleanup(deps(db, clock, [policy("expired_holds")], { releaseExpiredHold: failing }));
    assert.ok(outcome.policies[0].skipped >= 1);
    const hold = await db.collection("credit_holds").doc(id).get();
    assert.equal(hold.exists, true);
    assert.equal(hold.get("status"), "open");
  });

  it("operation_queues: when applied or rejected entries are older than the age, then only those are removed from RTDB", async () => {
    const clock = fixedClock();
    const now = clock.now().getTime();
    const age = 24 * HOUR;
    const uid = newUid("queue");
    const entries: Record<string, [Record<string, unknown>, boolean]> = {
      applied_old: [{ status: "applied", processed_at: now - age - MINUTE }, true],
      rejected_old: [{ status: "rejected", processed_at: now - age - MINUTE }, true],
      applied_young: [{ status: "applied", processed_at: now - age + MINUTE }, false],
      pending_old: [{ status: "pending", processed_at: now - age - MINUTE }, false],
      unprocessed: [{ op: "spend" }, false],
    };
    const rtdb = realtimeDb();
    await rtdb
      .ref(`operation_queues/${uid}`)
      .set(Object.fromEntries(Object.entries(entries).map(([id, [entry]]) => [id, entry])));

    const outcome = await runTtlCleanup(deps(db, clock, [policy("operation_queues")], { pageSize: 2 }));

    assert.equal(outcome.complete, true);
    const left = ((await rtdb.ref(`operation_queues/${uid}`).once("value")).val() ?? {}) as Record<string, unknown>;
    for (const [id, [, gone]] of Object.entries(entries))
      assert.equal(id in left, !gone, `${id} should ${gone ? "go" : "stay"}`);
  });

  it("notifications: when a MongoDB notification's expireAt has passed, then it is deleted; unexpired and undated ones stay", async () => {
    const clock = fixedClock();
    const now = clock.now().getTime();
    const userId = newUid("notified");
    const collection = (await mongo()).collection("notifications");
    const { ObjectId } = functionsRequire<typeof import("mongodb")>("mongodb");
    const seeds: Array<[InstanceType<typeof ObjectId>, Date | undefined, boolean]> = [
      [new ObjectId(), new Date(now - MINUTE), true],
      [new ObjectId(), new Date(now + MINUTE), false],
      [new ObjectId(), undefined, false],
    ];
    await collection.insertMany(
      seeds.map(([id, expireAt]) => ({
        _id: id,
        userId,
        contentSessionId: "s1",
        messageId: "m1",
        createdAt: new Date(now - DAY),
        type: "job_succeeded",
        toastMessage: "done",
        urgency: "low",
        persistent: false,
        seen: false,
        seenAt: null,
        ...(expireAt ? { expireAt } : {}),
      })),
    );

    const outcome = await runTtlCleanup(deps(db, clock, [policy("notifications")]));

    assert.equal(outcome.policies[0].error, undefined);
    for (const [id, expireAt, gone] of seeds) {
      assert.equal(
        (await collection.countDocuments({ _id: id })) === 0,
        gone,
        `expireAt ${expireAt?.toISOString() ?? "none"}`,
      );
    }
  });

  it("lancedb_versions: when table versions are older than the age, then the table is compacted and they are cleaned; younger ones stay", async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), "ttl-lance-"));
    try {
      const connection = await lanceAt(folder);
      const table = await connection.createTable("knowledge_text", [
        { chunk_id: "a", content: "x", embedding: [0.1, 0.2] },
      ]);
      for (const id of ["b", "c", "d"]) await table.add([{ chunk_id: id, content: id, embedding: [0.3, 0.4] }]);
      const versionsBefore = (await table.listVersions()).length;
      const lance = async () => connection;
      const lancePolicy = policy("lancedb_versions", { ...DEFAULT_RETENTION, lanceVersionHours: 1 });

      // Versions written just now are inside the age: compaction runs, nothing old is cleaned.
      const young = await runTtlCleanup(deps(db, fixedClock(), [lancePolicy], { lance }));
      assert.equal(young.policies[0].applied, 0);
      assert.ok((await table.listVersions()).length >= versionsBefore);

      // Two hours later every earlier version is past the age.
      const later = await runTtlCleanup(
        deps(db, fixedClock(new Date(Date.now() + 2 * HOUR)), [lancePolicy], { lance }),
      );
      assert.ok(later.policies[0].applied >= versionsBefore, JSON.stringify(later));
      assert.ok((await table.listVersions()).length < versionsBefore);
      assert.equal(await table.countRows(), 4);
      table.close();
      connection.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it("when a run is cut by its time budget, then the next run resumes where it stopped and finishes, deleting only matching documents", async () => {
    const clock = fixedClock();
    const now = clock.now().getTime();
    const collection = newUid("ttl_budget");
    const budgetPolicy: RetentionPolicy = {
      name: "budget_test",
      store: "firestore",
      collection,
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    };
    const expired = Array.from({ length: 7 }, (_, i) => `old-${i}`);
    const live = ["live-0", "live-1"];
    await Promise.all([
      ...expired.map((id, i) =>
        db
          .collection(collection)
          .doc(id)
          .set({ expire_at: new Date(now - (i + 1) * MINUTE) }),
      ),
      ...live.map((id) =>
        db
          .collection(collection)
          .doc(id)
          .set({ expire_at: new Date(now + MINUTE) }),
      ),
    ]);
    const stateId = newUid("ttl-state");
    // A budget of 0 lets each run do exactly its one guaranteed page.
    const cut = deps(db, clock, [budgetPolicy], { pageSize: 3, budgetMs: 0, stateId });

    const first = await runTtlCleanup(cut);
    assert.equal(first.complete, false);
    assert.equal(first.policies[0].applied, 3);
    const state = await db.collection("scheduler_state").doc(stateId).get();
    assert.equal(state.get("policy"), "budget_test", "the resume point is saved");
    assert.equal((await db.collection(collection).get()).size, 6);

    const second = await runTtlCleanup({ ...cut, budgetMs: 60_000 });
    assert.equal(second.complete, true);
    const left = (await db.collection(collection).get()).docs.map((doc) => doc.id).sort();
    assert.deepEqual(left, live);
    assert.equal(
      (await db.collection("scheduler_state").doc(stateId).get()).exists,
      false,
      "the resume point is cleared",
    );
  });

  it("when the budget runs out between policies, then the next run starts at the policy it stopped in, so later policies are not starved", async () => {
    const clock = fixedClock();
    const past = new Date(clock.now().getTime() - MINUTE);
    const make = (name: string): RetentionPolicy => ({
      name,
      store: "firestore",
      collection: newUid(`ttl_${name}`),
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    });
    const [first, second] = [make("first"), make("second")];
    if (first.store !== "firestore" || second.store !== "firestore") throw new Error("unreachable");
    await Promise.all([
      ...["a", "b", "c"].map((id) => db.collection(first.collection).doc(id).set({ expire_at: past })),
      db.collection(second.collection).doc("z").set({ expire_at: past }),
    ]);
    const cut = deps(db, clock, [first, second], { pageSize: 2, budgetMs: 0, stateId: newUid("ttl-state") });

    // Each run gets exactly its one guaranteed page ("…" marks the policy a run stopped in).
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const outcome = await runTtlCleanup(cut);
      runs.push(outcome.policies.map((p) => `${p.policy}:${p.applied}${p.done ? "" : "…"}`).join(" "));
    }
    assert.deepEqual(runs, ["first:2…", "first:1 second:0…", "second:1 first:0…"]);
    assert.equal((await db.collection(first.collection).get()).size, 0);
    assert.equal((await db.collection(second.collection).get()).size, 0);
  });

  it("when a matched document changes before its delete lands, then it is not deleted, and the rest of its batch still is", async () => {
    const clock = fixedClock();
    const collection = newUid("ttl_race");
    const ref = db.collection(collection).doc("doc");
    const others = ["a", "b", "c"].map((id) => db.collection(collection).doc(id));
    await Promise.all([ref, ...others].map((doc) => doc.set({ expire_at: new Date(clock.now().getTime() - MINUTE) })));
    const racePolicy: RetentionPolicy = {
      name: "race",
      store: "firestore",
      collection,
      timestampField: "expire_at",
      ageMs: 0,
      where: [],
      action: "delete",
    };
    // Between the read of the page and its commit, the document is extended.
    const originalBatch = db.batch.bind(db);
    const racing = Object.assign(Object.create(Object.getPrototypeOf(db) as object) as Firestore, db, {
      batch: () => {
        const batch = originalBatch();
        const commit = batch.commit.bind(batch);
        batch.commit = () => ref.update({ expire_at: new Date(clock.now().getTime() + DAY) }).then(commit);
        return batch;
      },
    });
    const outcome = await runTtlCleanup(deps(racing, clock, [racePolicy]));
    assert.equal(outcome.policies[0].skipped, 1);
    assert.equal(outcome.policies[0].applied, 3);
    assert.equal((await ref.get()).exists, true);
    for (const other of others) assert.equal((await other.get()).exists, false);
  });
});
