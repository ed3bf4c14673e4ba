/**
 * Seeded randomized replay (PRODUCT.md invariant 4): random balance changes
 * for several users, their trigger events delivered to the functions emulator
 * again with random duplicates and in random order, then RTDB must equal
 * Firestore for every user and there must be exactly one audit entry per
 * distinct event. Replay a failure with MIRROR_SEED=<seed printed below>.
 */
import assert from "node:assert/strict";
import { realtimeDb } from "../support/stores";
import { adjustCredits, grantCredits, spendCredits } from "../../functions/src/credits/operations";
import { assertLedgerInvariants, db, ledgerOf } from "../support/credits";
import { deliver, firestoreWrittenEvent, newUid, suite, waitFor } from "../support/suite";
import { closeTestMongo, testMongo } from "../support/mongo";
import { seededRandom as prng } from "../support/random";

interface Mirror {
  balance: number;
  held: number;
  available: number;
  version: number;
}

async function auditCount(path: string): Promise<number> {
  return (await db().collection("audit_logs").where("path", "==", path).count().get()).data().count;
}

/**
 * Both functions are `retry: true`: the platform redelivers an event whose function failed (a 5xx here,
 * e.g. MongoDB not answering within its server-selection timeout on a loaded machine). Deliver the same way,
 * a few times with backoff, so the test judges what the functions converge to, not one attempt's luck.
 */
async function deliverAsPlatform(name: string, event: unknown): Promise<{ status: number; text: string }> {
  for (let attempt = 1; ; attempt++) {
    const answer = await deliver(suite.functionsOrigin, name, event);
    if (answer.status < 500 || attempt === 5) return answer;
    await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
  }
}

describe("e2e: mirrors and audit under duplicate and out-of-order delivery", function () {
  this.timeout(300_000);
  after(() => closeTestMongo());

  it("when a seeded random history is replayed with duplicates and reordering, then RTDB equals Firestore and audit has one entry per event", async () => {
    const seed = Number(process.env.MIRROR_SEED ?? Math.floor(Math.random() * 2 ** 31));
    process.stdout.write(`      replay seed: MIRROR_SEED=${seed}\n`);
    const random = prng(seed);
    const users = Array.from({ length: 4 }, () => newUid("mirror"));
    const deps = { db: db() };

    // 1. A random history per user, through the real use cases (the emulator fires the real triggers too).
    for (const uid of users) {
      await grantCredits(deps, "replay", {
        user_id: uid,
        amount: 50 + Math.floor(random() * 100),
        type: "grant",
        reason: "seed",
        idempotency_key: `g-${uid}`,
      });
      const steps = 4 + Math.floor(random() * 6);
      for (let step = 0; step < steps; step++) {
        const roll = random();
        const key = `${uid}-${step}`;
        try {
          if (roll < 0.6)
            await spendCredits(deps, uid, {
              feature: "chat.message",
              quantity: 1 + Math.floor(random() * 20),
              idempotency_key: key,
            });
          else if (roll < 0.85)
            await grantCredits(deps, "replay", {
              user_id: uid,
              amount: 1 + Math.floor(random() * 30),
              type: "purchase",
              reason: "top-up",
              idempotency_key: key,
            });
          else
            await adjustCredits(deps, "replay", {
              user_id: uid,
              amount: -1 - Math.floor(random() * 5),
              reason: "fix",
              idempotency_key: key,
            });
        } catch (error) {
          // Refused changes (insufficient credits) write nothing; that is part of the history too.
          assert.equal((error as { code?: string }).code, "failed-precondition");
        }
      }
    }

    // 2. Every state change as a trigger event, each 1–3 times, all shuffled.
    const events: Array<{ uid: string; event: ReturnType<typeof firestoreWrittenEvent> }> = [];
    const distinct = new Map<string, Set<string>>();
    for (const uid of users) {
      const ledger = await ledgerOf(uid);
      const states = ledger.map((entry, index) => ({
        data: {
          credits_balance: entry.balance_after,
          credits_held: entry.held_after,
          ledger_version: entry.ledger_version,
          updated_by: "replay",
        },
        updateTime: new Date(Date.UTC(2030, 0, 1) + index * 1000),
      }));
      distinct.set(uid, new Set());
      states.forEach((after, index) => {
        const id = `replay-${seed}-${uid}-v${index + 1}`;
        distinct.get(uid)!.add(id);
        const event = firestoreWrittenEvent(`users/${uid}`, index === 0 ? undefined : states[index - 1], after, id);
        const copies = 1 + Math.floor(random() * 3);
        for (let copy = 0; copy < copies; copy++) events.push({ uid, event });
      });
    }
    for (let i = events.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [events[i], events[j]] = [events[j], events[i]];
    }
    process.stdout.write(
      `      delivering ${events.length} events (${[...distinct.values()].reduce((n, s) => n + s.size, 0)} distinct) to mirror and audit\n`,
    );
    for (let i = 0; i < events.length; i += 6) {
      await Promise.all(
        events.slice(i, i + 6).flatMap(({ event }) =>
          ["mirrorUserBalance", "auditUsers"].map(async (name) => {
            const { status, text } = await deliverAsPlatform(name, event);
            assert.ok(status < 300, `${name}: HTTP ${status} ${text.slice(0, 200)}`);
          }),
        ),
      );
    }

    // 3. Converged: the mirror equals Firestore, and audit has the real events plus one per distinct replayed event.
    for (const uid of users) {
      const user = (await db().collection("users").doc(uid).get()).data() as {
        credits_balance: number;
        credits_held: number;
        ledger_version: number;
      };
      const expected: Mirror = {
        balance: user.credits_balance,
        held: user.credits_held,
        available: user.credits_balance - user.credits_held,
        version: user.ledger_version,
      };
      const mirror = await waitFor(`mirror of ${uid}`, async () => {
        const value = (await realtimeDb().ref(`user_balances/${uid}`).once("value")).val() as Mirror | null;
        return value && value.version === expected.version ? value : undefined;
      });
      assert.deepEqual(
        { balance: mirror.balance, held: mirror.held, available: mirror.available, version: mirror.version },
        expected,
        `seed ${seed}`,
      );
      // Real writes to users/{uid} (one per ledger change) each fired auditUsers once, plus the replayed events.
      const wanted = user.ledger_version + distinct.get(uid)!.size;
      await waitFor(`audit entries of ${uid}`, async () => (await auditCount(`users/${uid}`)) >= wanted);
      assert.equal(await auditCount(`users/${uid}`), wanted, `seed ${seed}`);
      for (const id of distinct.get(uid)!) {
        const entry = await db().collection("audit_logs").doc(id).get();
        assert.ok(entry.exists, `audit entry for ${id}`);
      }
      await assertLedgerInvariants(uid);
    }
  });

  it("when a user document is deleted, then the mirror is removed and a late older event does not bring it back", async () => {
    const uid = newUid("mirror");
    await grantCredits({ db: db() }, "t", {
      user_id: uid,
      amount: 10,
      type: "grant",
      reason: "x",
      idempotency_key: "g",
    });
    await waitFor(
      "mirror built",
      async () => (await realtimeDb().ref(`user_balances/${uid}`).once("value")).exists() || undefined,
    );
    await db().collection("users").doc(uid).delete();
    await waitFor(
      "mirror removed",
      async () => (await realtimeDb().ref(`user_balances/${uid}`).once("value")).val() === null,
    );
    const late = firestoreWrittenEvent(
      `users/${uid}`,
      { data: { credits_balance: 10, credits_held: 0, ledger_version: 1 }, updateTime: new Date(Date.UTC(2030, 0, 1)) },
      { data: { credits_balance: 10, credits_held: 0, ledger_version: 2 }, updateTime: new Date(Date.UTC(2030, 0, 2)) },
    );
    const { status } = await deliverAsPlatform("mirrorUserBalance", late);
    assert.ok(status < 300);
    assert.equal((await realtimeDb().ref(`user_balances/${uid}`).once("value")).val(), null);
  });

  it("when an admin grant is followed by a console edit of credits_balance, then the edit's audit entry names no actor (unknown), the grant's names the admin", async () => {
    const uid = newUid("audited");
    const path = `users/${uid}`;
    await grantCredits({ db: db() }, "root", {
      user_id: uid,
      amount: 40,
      type: "grant",
      reason: "seed",
      idempotency_key: "g",
    });
    // A console-style edit: the Admin SDK writes the balance alone, without updated_by / updated_at.
    await db().collection("users").doc(uid).update({ credits_balance: 1_000_000 });

    const entries = await waitFor("both audit entries", async () => {
      const snapshot = await db().collection("audit_logs").where("path", "==", path).get();
      return snapshot.size >= 2 ? snapshot.docs.map((doc) => doc.data()) : undefined;
    });
    const grant = entries.find((entry) => entry.kind === "create");
    const edit = entries.find((entry) => entry.kind === "update");
    assert.equal(grant?.actor, "admin:root");
    assert.deepEqual(edit?.changed_fields, ["credits_balance"]);
    assert.equal(edit?.actor, "unknown", "the last writer's updated_by is not this write's actor");
  });

  it("when a dip below the low-balance threshold and its recovery reach the trigger recovery first, then the user is notified once", async () => {
    const uid = newUid("lowbal");
    // Available credits at ledger versions 1..3 around the threshold (20): a dip at v2. The ledger entries are
    // written as credits writes them, but no users document, so only the events delivered here reach the trigger.
    const available = [100, 10, 100];
    await Promise.all(
      available.map((credits, index) =>
        db()
          .collection("credit_transactions")
          .doc(`${uid}_v${index + 1}`)
          .set({
            user_id: uid,
            type: index === 1 ? "spend" : "grant",
            amount: index === 0 ? credits : credits - available[index - 1],
            balance_after: credits,
            held_after: 0,
            ledger_version: index + 1,
          }),
      ),
    );
    const state = (index: number) => ({
      data: { credits_balance: available[index], credits_held: 0, ledger_version: index + 1, updated_by: "test" },
      updateTime: new Date(Date.UTC(2030, 0, 1) + index * 1000),
    });
    const events = available.map((_, index) =>
      firestoreWrittenEvent(`users/${uid}`, index === 0 ? undefined : state(index - 1), state(index)),
    );

    for (const event of [events[0], events[2], events[1], events[1]]) {
      const { status, text } = await deliverAsPlatform("mirrorUserBalance", event);
      assert.ok(status < 300, `HTTP ${status} ${text.slice(0, 200)}`);
    }

    const notifications = (await testMongo()).collection<{ userId: string; type: string; dedupeKey: string }>(
      "notifications",
    );
    assert.deepEqual(
      (await notifications.find({ userId: uid, type: "low_balance" }).toArray()).map((doc) => doc.dedupeKey),
      [`low_balance:${uid}:v2`],
    );
  });
});
