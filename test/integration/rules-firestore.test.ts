/**
 * Firestore security rules on the official emulator: a denial matrix of
 * (unauthenticated, owner, another user, admin) × (get, list, create, update, delete)
 * for every credit and payment collection. Clients may read what is theirs and never write.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  assertFails,
  assertSucceeds,
  initializeTestEnvironment,
  type RulesTestEnvironment,
} from "@firebase/rules-unit-testing";
import { doc, getDoc, setDoc, updateDoc, deleteDoc, collection, query, where, getDocs } from "firebase/firestore";
import { env } from "../support/suite";

type Who = "unauthenticated" | "owner" | "other" | "admin";
type Op = "get" | "list" | "create" | "update" | "delete";

/** What each role may do per collection; anything not listed must be denied. */
const ALLOWED: Record<string, Partial<Record<Who, Op[]>>> = {
  users: { owner: ["get"], admin: ["get", "list"] },
  credit_transactions: { owner: ["get", "list"], admin: ["get", "list"] },
  credit_holds: { owner: ["get", "list"], admin: ["get", "list"] },
  credit_lots: { owner: ["get", "list"], admin: ["get", "list"] },
  jobs: { owner: ["get", "list"] },
  idempotency_keys: {},
  audit_logs: { admin: ["get", "list"] },
  low_balance_state: {},
  processed_events: {},
  payments: { owner: ["get", "list"], admin: ["get", "list"] },
  topups: { owner: ["get", "list"], admin: ["get", "list"] },
  stripe_events: {},
};

const OWNER = "alice";

describe("integration: Firestore rules denial matrix", function () {
  this.timeout(60_000);
  let testEnv: RulesTestEnvironment;

  before(async () => {
    const [host, port] = env("FIRESTORE_EMULATOR_HOST").split(":");
    testEnv = await initializeTestEnvironment({
      projectId: `rules-${Date.now()}`,
      firestore: {
        host,
        port: Number(port),
        rules: readFileSync(path.join(__dirname, "..", "..", "firestore.rules"), "utf8"),
      },
    });
    await testEnv.withSecurityRulesDisabled(async (context) => {
      const db = context.firestore();
      await setDoc(doc(db, "users", OWNER), { credits_balance: 10, credits_held: 0, ledger_version: 1 });
      for (const name of [
        "credit_transactions",
        "credit_holds",
        "credit_lots",
        "jobs",
        "idempotency_keys",
        "processed_events",
        "audit_logs",
        "low_balance_state",
        "payments",
        "topups",
        "stripe_events",
      ]) {
        await setDoc(doc(db, name, "d1"), { user_id: OWNER, amount: 1 });
      }
    });
  });

  after(() => testEnv?.cleanup());

  const contextOf = (who: Who) =>
    who === "unauthenticated"
      ? testEnv.unauthenticatedContext()
      : testEnv.authenticatedContext(
          who === "owner" ? OWNER : who === "other" ? "mallory" : "root",
          who === "admin" ? { admin: true } : {},
        );

  for (const [name, allowed] of Object.entries(ALLOWED)) {
    for (const who of ["unauthenticated", "owner", "other", "admin"] as Who[]) {
      for (const op of ["get", "list", "create", "update", "delete"] as Op[]) {
        const permitted = allowed[who]?.includes(op) ?? false;
        it(`${name}: ${who} ${op} is ${permitted ? "allowed" : "denied"}`, async () => {
          const db = contextOf(who).firestore();
          const id = name === "users" ? OWNER : "d1";
          const ref = doc(db, name, id);
          const attempt = {
            get: () => getDoc(ref),
            // Owners' queries must filter on their own user_id; users are listed only by admins.
            list: () =>
              getDocs(
                name === "users" || name === "audit_logs"
                  ? collection(db, name)
                  : query(collection(db, name), where("user_id", "==", OWNER)),
              ),
            create: () => setDoc(doc(db, name, `new-${who}`), { user_id: OWNER, credits_balance: 1e9 }),
            update: () => updateDoc(ref, { credits_balance: 1e9, amount: 1e9 }),
            delete: () => deleteDoc(ref),
          }[op] as () => Promise<unknown>;
          if (permitted) await assertSucceeds(attempt());
          else await assertFails(attempt());
        });
      }
    }
  }

  it("an owner cannot list another user's ledger, even by querying for it", async () => {
    const db = testEnv.authenticatedContext("mallory").firestore();
    await assertFails(getDocs(query(collection(db, "credit_transactions"), where("user_id", "==", OWNER))));
    assert.ok(true);
  });
});
