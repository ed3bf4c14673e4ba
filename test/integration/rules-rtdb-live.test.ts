/**
 * database.rules.json enforced by the local Realtime Database, as a client app
 * meets it: the v12 client SDK signed in through the Auth emulator (its own
 * users), signed out, and the REST API with an ID token, beside firebase-admin
 * writing as the server does. (test/unit/rules-rtdb.test.ts checks the rules
 * themselves, case by case.)
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { deleteApp, initializeApp, type FirebaseApp } from "firebase/app";
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signOut, type Auth } from "firebase/auth";
import { connectDatabaseEmulator, get, getDatabase, goOffline, ref, set, type Database } from "firebase/database";
import { adminApp } from "../../functions/src/adapters/firebase";
import { functionsRequire, realtimeDb } from "../support/stores";
import { env, newUid, suite } from "../support/suite";

interface ClientApp {
  app: FirebaseApp;
  auth: Auth;
  db: Database;
}

describe("integration: Realtime Database rules through the client SDK and REST", function () {
  this.timeout(60_000);
  const [dbHost, dbPort] = env("FIREBASE_DATABASE_EMULATOR_HOST").split(":");
  const apps: ClientApp[] = [];

  function clientApp(): ClientApp {
    const app = initializeApp(
      {
        apiKey: "fake-api-key",
        projectId: suite.projectId,
        databaseURL: `http://${dbHost}:${dbPort}?ns=${suite.projectId}-default-rtdb`,
      },
      `rtdb-rules-${randomUUID()}`,
    );
    const auth = getAuth(app);
    connectAuthEmulator(auth, `http://${env("FIREBASE_AUTH_EMULATOR_HOST")}`, { disableWarnings: true });
    const db = getDatabase(app);
    connectDatabaseEmulator(db, dbHost, Number(dbPort));
    const client = { app, auth, db };
    apps.push(client);
    return client;
  }

  async function signUp(client: ClientApp): Promise<{ uid: string; token: string }> {
    const credential = await createUserWithEmailAndPassword(
      client.auth,
      `${randomUUID()}@example.test`,
      "a-good-password",
    );
    return { uid: credential.user.uid, token: await credential.user.getIdToken() };
  }

  /** A denied read or write rejects with PERMISSION_DENIED, never hangs. */
  async function denied(operation: Promise<unknown>, what: string): Promise<void> {
    await assert.rejects(
      operation,
      (error: Error) => /permission.denied/i.test(`${(error as { code?: string }).code ?? ""} ${error.message}`),
      what,
    );
  }

  function rest(path: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<Response> {
    const url = new URL(`http://${dbHost}:${dbPort}/${path}.json`);
    url.searchParams.set("ns", `${suite.projectId}-default-rtdb`);
    if (init.token) url.searchParams.set("auth", init.token);
    return fetch(url, {
      method: init.method ?? "GET",
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  }

  after(async () => {
    for (const client of apps) {
      goOffline(client.db);
      await signOut(client.auth);
      await deleteApp(client.app);
    }
  });

  it("when a user is signed in, then they read their own balance and nobody else's; signed out, nothing", async () => {
    const alice = clientApp();
    const { uid } = await signUp(alice);
    const other = newUid("rtdb-other");
    await realtimeDb().ref(`user_balances/${uid}`).set({ balance: 7, held: 0, available: 7, version: 1 });
    await realtimeDb().ref(`user_balances/${other}`).set({ balance: 9, held: 0, available: 9, version: 1 });

    const own = await get(ref(alice.db, `user_balances/${uid}`));
    assert.equal((own.val() as { balance: number }).balance, 7);
    await denied(get(ref(alice.db, `user_balances/${other}`)), "another user's balance");
    await denied(set(ref(alice.db, `user_balances/${uid}`), { balance: 1_000_000 }), "writing one's own balance");
    assert.equal(
      (await realtimeDb().ref(`user_balances/${uid}/balance`).once("value")).val(),
      7,
      "the denied write changed nothing",
    );

    await signOut(alice.auth);
    await denied(get(ref(alice.db, `user_balances/${uid}`)), "signed out");
  });

  it("when a signed-in client queues a spend, then only a well-formed op under its own uid is accepted", async () => {
    const bob = clientApp();
    const { uid } = await signUp(bob);
    const op = { type: "spend", feature: "chat", quantity: 2, created_at: Date.now() - 1000 };
    await set(ref(bob.db, `operation_queues/${uid}/op-1`), op);
    assert.deepEqual((await realtimeDb().ref(`operation_queues/${uid}/op-1`).once("value")).val(), op);
    await denied(set(ref(bob.db, `operation_queues/${uid}/op-1`), { ...op, quantity: 3 }), "rewriting a queued op");
    await denied(set(ref(bob.db, `operation_queues/${newUid("victim")}/op-1`), op), "queueing for another user");
    await denied(set(ref(bob.db, `operation_queues/${uid}/op-2`), { ...op, quantity: -5 }), "a negative quantity");
    assert.equal((await realtimeDb().ref(`operation_queues/${uid}/op-2`).once("value")).exists(), false);
  });

  it("when the REST API is called with an ID token, then the same rules decide; a forged token is refused", async () => {
    const carol = clientApp();
    const { uid, token } = await signUp(carol);
    await realtimeDb().ref(`user_balances/${uid}`).set({ balance: 3, held: 0, available: 3, version: 1 });

    const own = await rest(`user_balances/${uid}`, { token });
    assert.equal(own.status, 200);
    assert.equal(((await own.json()) as { balance: number }).balance, 3);
    assert.equal((await rest(`user_balances/${uid}`)).status, 401, "no token");
    assert.equal((await rest(`user_balances/${newUid("rest-other")}`, { token })).status, 401, "another user's");
    const put = await rest(`user_balances/${uid}`, { method: "PUT", body: { balance: 999 }, token });
    assert.equal(put.status, 401);
    assert.equal((await realtimeDb().ref(`user_balances/${uid}/balance`).once("value")).val(), 3);

    const [header, payload] = token.split(".");
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), aud: "someone-else" })).toString("base64url")}.`;
    assert.equal((await rest(`user_balances/${uid}`, { token: forged })).status, 401, "a token for another project");

    const op = { type: "spend", feature: "chat", quantity: 1, created_at: Date.now() - 1000 };
    const queued = await rest(`operation_queues/${uid}/rest-op`, { method: "PUT", body: op, token });
    assert.equal(queued.status, 200);
    // The rules' view follows REST writes too: the op now exists and may not be rewritten.
    assert.equal(
      (await rest(`operation_queues/${uid}/rest-op`, { method: "PUT", body: { ...op, quantity: 9 }, token })).status,
      401,
    );
  });

  it("when a server transaction's first attempt is stale and refused, then the rules still see the data, not the attempt", async () => {
    const dave = clientApp();
    const { uid, token } = await signUp(dave);
    const path = `operation_queues/${uid}/answered-op`;
    const op = { type: "spend", feature: "chat", quantity: 1, created_at: Date.now() - 1000 };
    // Answered already, so the queue's trigger leaves it alone.
    const answered = { ...op, status: "applied" };
    await realtimeDb().ref(path).set(answered);

    // A second admin app has nothing cached, so its transaction's first attempt guesses null, as the queue's
    // write-back does. firebase-server checks that attempt's write before its hash: the attempt (delete the op)
    // is refused as stale, and the function then sees the op and gives up, so no corrective write follows.
    const { deleteApp: deleteAdminApp, initializeApp: initializeAdminApp } =
      functionsRequire<typeof import("firebase-admin/app")>("firebase-admin/app");
    const { getDatabase: getAdminDatabase } =
      functionsRequire<typeof import("firebase-admin/database")>("firebase-admin/database");
    const fresh = initializeAdminApp(adminApp().options, `rtdb-stale-${randomUUID()}`);
    const seen: unknown[] = [];
    try {
      const result = await getAdminDatabase(fresh)
        .ref(path)
        .transaction((current: unknown) => {
          seen.push(current);
          return current === null ? null : undefined;
        });
      assert.equal(result.committed, false);
    } finally {
      await deleteAdminApp(fresh);
    }
    assert.equal(seen[0], null, "a stale first guess");
    assert.deepEqual(seen.at(-1), answered, "then the data");

    // The op exists, so rewriting it is refused; a view left by the stale attempt would have let this through.
    const rewrite = await rest(path, { method: "PUT", body: { ...op, quantity: 9 }, token });
    assert.equal(rewrite.status, 401);
    assert.deepEqual((await realtimeDb().ref(path).once("value")).val(), answered);
  });
});
