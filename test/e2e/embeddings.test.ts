/**
 * The embeddings pipeline end to end: callables through the functions
 * emulator, messages through the Pub/Sub emulator into the consumer, LanceDB
 * and Firestore read behind it. In test runs the functions embed through the
 * OpenAI-compatible client against the harness's local server speaking that
 * API (scripts/harness/embeddings-api.ts), which fails on cue.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import type { Table } from "@lancedb/lancedb";
import { stampIngest } from "../../functions/src/embeddings/sources";
import { tableName } from "../../functions/src/embeddings/store";
import { embeddingsApiStats, openIfExists, publishRaw, testFirestore } from "../support/embeddings";
import { callFunction, deliver, env, newUid, suite, waitFor } from "../support/suite";

const ADMIN = { uid: "knowledge-admin", claims: { admin: true } };
const TOPIC = "embedding-requests";

interface SourceDoc {
  status: string;
  content_hash?: string | null;
  chunk_count?: number;
  embedding_model?: string;
  dims?: number;
  table?: string;
  last_message_id?: string;
  table_version?: number;
  indexed_at?: unknown;
  error?: string | null;
  attempts?: number;
}

interface SearchAnswer {
  model: string;
  dims: number;
  results: Array<{
    chunk_id: string;
    source_id: string;
    content: string;
    metadata: Record<string, unknown>;
    score: number;
  }>;
}

const knowledgeTable = () => tableName("knowledge_text", env("EMBEDDING_MODEL"), Number(env("EMBEDDING_DIMS")));

async function sourceDoc(sourceId: string): Promise<SourceDoc | undefined> {
  const snapshot = await testFirestore().collection("knowledge_sources").doc(sourceId).get();
  return snapshot.exists ? (snapshot.data() as SourceDoc) : undefined;
}

/** Ingests through the callable and waits until the consumer has handled that very message. */
async function ingest(
  sourceId: string,
  text: string,
  metadata: Record<string, unknown> = {},
): Promise<{ messageId: string; doc: SourceDoc }> {
  const answer = await callFunction<{ message_id: string; generation: number }>(
    "ingestKnowledge",
    { source_id: sourceId, text, metadata },
    ADMIN,
  );
  assert.equal(answer.status, 200, JSON.stringify(answer.error));
  assert.ok(
    Number.isInteger(answer.result!.generation) && answer.result!.generation >= 1,
    "the answer names the request's generation",
  );
  const messageId = answer.result!.message_id;
  const doc = await waitFor(
    `${sourceId} handled ${messageId}`,
    async () => {
      const current = await sourceDoc(sourceId);
      return current?.last_message_id === messageId ? current : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return { messageId, doc };
}

async function search(query: string, extra: Record<string, unknown> = {}): Promise<SearchAnswer> {
  const answer = await callFunction<SearchAnswer>("searchKnowledge", { query, ...extra }, { uid: newUid() });
  assert.equal(answer.status, 200, JSON.stringify(answer.error));
  return answer.result!;
}

async function table(): Promise<Table> {
  return waitFor("the knowledge table", () => openIfExists(knowledgeTable()), { timeoutMs: 30_000 });
}

/** The source's rows as comparable strings (id, text, vector digest). */
async function rowsOf(sourceId: string): Promise<string[]> {
  const rows = (await (await table()).query().where(`source = '${sourceId}'`).toArray()) as Array<{
    chunk_id: string;
    content: string;
    embedding: Iterable<number>;
  }>;
  return rows
    .map(
      (row) =>
        `${row.chunk_id}|${row.content}|${createHash("sha1").update(Array.from(row.embedding).join(",")).digest("hex")}`,
    )
    .sort();
}

async function deadLetter(messageId: string): Promise<Record<string, unknown>> {
  return waitFor(
    `dead letter for ${messageId}`,
    async () => {
      const snapshot = await testFirestore().collection("dead_letters").doc(`embeddings:${messageId}`).get();
      return snapshot.exists ? snapshot.data() : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

/** A Pub/Sub CloudEvent as the emulator delivers it, for a message id of our choosing. */
function pubsubEvent(messageId: string, payload: Buffer): unknown {
  const time = new Date().toISOString();
  return {
    specversion: "1.0",
    id: randomUUID(),
    time,
    type: "google.cloud.pubsub.topic.v1.messagePublished",
    source: `//pubsub.googleapis.com/projects/${suite.projectId}/topics/${TOPIC}`,
    data: {
      message: {
        messageId,
        message_id: messageId,
        publishTime: time,
        publish_time: time,
        attributes: {},
        data: payload.toString("base64"),
      },
      subscription: `projects/${suite.projectId}/subscriptions/test-${TOPIC}`,
    },
  };
}

/** An ingest request as ingestKnowledge publishes it, under the source's next generation taken as ingest takes it. */
async function request(sourceId: string, text: string): Promise<Buffer> {
  const generation = await stampIngest(testFirestore(), sourceId);
  return Buffer.from(
    JSON.stringify({
      op: "ingest",
      source_id: sourceId,
      text,
      metadata: {},
      requested_by: "test",
      requested_at: Date.now(),
      generation,
    }),
  );
}

const GARDEN =
  "Tomatoes need six hours of direct sunlight every day. Water them deeply at the roots twice a week. Stake the plants so the fruit stays off the soil.";
const RAILWAY =
  "The night train leaves the central station at eleven. Sleeper cabins have two bunks and a washbasin. Tickets can be exchanged until departure.";

describe("e2e: knowledge ingestion and search through Pub/Sub", function () {
  this.timeout(180_000);

  it("when an admin ingests a text, then the consumer indexes it and searchKnowledge finds it with score and metadata", async () => {
    const id = newUid("doc");
    const { doc } = await ingest(id, GARDEN, { lang: "en", topic: "garden" });
    assert.equal(doc.status, "indexed");
    assert.equal(doc.embedding_model, env("EMBEDDING_MODEL"));
    assert.equal(doc.dims, 384);
    assert.equal(doc.table, knowledgeTable());
    assert.ok((doc.chunk_count ?? 0) >= 1);
    assert.match(doc.content_hash ?? "", /^[0-9a-f]{64}$/);
    assert.ok(doc.indexed_at, "indexed_at is set");
    assert.equal(doc.error, null);

    const answer = await search("how much sun do tomato plants need", { filter: { source_ids: [id] } });
    assert.equal(answer.results.length, doc.chunk_count);
    const [best] = answer.results;
    assert.equal(best.source_id, id);
    assert.match(best.content, /sunlight/);
    assert.deepEqual(best.metadata, { lang: "en", topic: "garden" });
    assert.ok(best.score > 0 && best.score <= 1, `score ${best.score}`);
  });

  it("when searching with a metadata filter, then only matching sources are returned, and filter values are never spliced into SQL", async () => {
    const tag = newUid("tag");
    const garden = newUid("doc");
    const railway = newUid("doc");
    await ingest(garden, GARDEN, { batch: tag, kind: "garden" });
    await ingest(railway, RAILWAY, { batch: tag, kind: "railway" });
    const both = await search("tomato sunlight train station", { k: 50, filter: { metadata: { batch: tag } } });
    assert.deepEqual([...new Set(both.results.map((hit) => hit.source_id))].sort(), [garden, railway].sort());
    const onlyRailway = await search("tomato sunlight", { filter: { metadata: { batch: tag, kind: "railway" } } });
    assert.deepEqual([...new Set(onlyRailway.results.map((hit) => hit.source_id))], [railway]);
    // A value that would break out of a SQL literal is just a value that matches nothing.
    const injected = await search("tomato", { filter: { metadata: { batch: `${tag}' OR '1'='1` } } });
    assert.deepEqual(injected.results, []);
    const badId = await callFunction(
      "searchKnowledge",
      { query: "x", filter: { source_ids: ["a' OR 1=1 --"] } },
      { uid: newUid() },
    );
    assert.equal(badId.error?.status, "INVALID_ARGUMENT");
  });

  it("when the same text is ingested again, then no new table version is written", async () => {
    const id = newUid("doc");
    await ingest(id, RAILWAY);
    const before = await (await table()).version();
    const rowsBefore = await rowsOf(id);
    const { doc } = await ingest(id, RAILWAY);
    assert.equal(doc.status, "indexed");
    assert.equal(await (await table()).version(), before, "the table version did not move");
    assert.deepEqual(await rowsOf(id), rowsBefore);
  });

  it("when a source's text changes, then its old chunks are gone and the new ones are found", async () => {
    const id = newUid("doc");
    const long = Array.from(
      { length: 12 },
      (_, i) => `Chapter ${i} of the ledger explains how credits are held for running jobs and released afterwards.`,
    ).join(" ");
    const first = await ingest(id, long);
    assert.ok((first.doc.chunk_count ?? 0) > 1, "the first text spans several chunks");
    const { doc } = await ingest(id, RAILWAY);
    assert.equal(doc.chunk_count, 1);
    // The record names the new rows first; the old generation's rows go right after (not searchable meanwhile).
    const rows = await waitFor(
      "exactly the new chunk remains",
      async () => {
        const current = await rowsOf(id);
        return current.length === 1 ? current : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.match(rows[0], /night train/);
    const old = await search("credits held for running jobs", { filter: { source_ids: [id] } });
    assert.ok(
      old.results.every((hit) => !hit.content.includes("ledger")),
      "no old chunk is returned",
    );
    const fresh = await search("sleeper cabins on the night train", { filter: { source_ids: [id] } });
    assert.match(fresh.results[0]?.content ?? "", /Sleeper cabins/);
  });

  it("when the same message is delivered twice, or the same request published twice, then the rows are the same", async () => {
    const id = newUid("doc");
    const payload = await request(id, GARDEN);
    const messageId = `dup-${randomUUID()}`;
    const firstDelivery = await deliver(suite.functionsOrigin, "embeddingConsumer", pubsubEvent(messageId, payload));
    assert.ok(firstDelivery.status < 300, firstDelivery.text);
    const rows = await rowsOf(id);
    const version = await (await table()).version();
    assert.ok(rows.length >= 1);

    const again = await deliver(suite.functionsOrigin, "embeddingConsumer", pubsubEvent(messageId, payload));
    assert.ok(again.status < 300, again.text);
    const republished = await publishRaw(TOPIC, payload);
    await waitFor("the republished copy handled", async () => (await sourceDoc(id))?.last_message_id === republished, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });

    assert.deepEqual(await rowsOf(id), rows);
    assert.equal(await (await table()).version(), version, "duplicates wrote nothing to LanceDB");
  });

  it("when a message is not a valid request, then it goes to dead_letters and is acked", async () => {
    const notJson = await publishRaw(TOPIC, "this is not json");
    const letter = await deadLetter(notJson);
    assert.equal(letter.message_id, notJson);
    assert.match(String(letter.error), /malformed message: not JSON/);
    assert.equal(letter.attempts, 1);

    // Delivered directly, the function's answer is what Pub/Sub sees: success, so the message is acked.
    const messageId = `poison-${randomUUID()}`;
    const delivered = await deliver(
      suite.functionsOrigin,
      "embeddingConsumer",
      pubsubEvent(messageId, Buffer.from(JSON.stringify({ op: "ingest", source_id: "../etc" }))),
    );
    assert.ok(delivered.status < 300, `acked: HTTP ${delivered.status} ${delivered.text}`);
    const second = await deadLetter(messageId);
    assert.match(String(second.error), /malformed message: source_id/);
  });

  it("when the provider answers 400, then the message is dead-lettered at once and acked, and the source is marked failed", async () => {
    const id = newUid("doc");
    const messageId = `reject-${randomUUID()}`;
    const delivered = await deliver(
      suite.functionsOrigin,
      "embeddingConsumer",
      pubsubEvent(messageId, await request(id, "Please embed this. [[reject]]")),
    );
    assert.ok(delivered.status < 300, `acked: HTTP ${delivered.status} ${delivered.text}`);
    const letter = await deadLetter(messageId);
    assert.equal(letter.source_id, id);
    assert.equal(letter.attempts, 1);
    assert.equal(letter.transient, false);
    assert.match(String(letter.error), /HTTP 400/);
    const doc = await sourceDoc(id);
    assert.equal(doc?.status, "failed");
    assert.equal(await (await table()).countRows(`source = '${id}'`), 0);
  });

  it("when the provider answers 429 and then 200, then the source is indexed", async () => {
    const id = newUid("doc");
    const token = randomUUID().replace(/-/g, "");
    const { doc } = await ingest(id, `${GARDEN} [[flaky:${token}]]`);
    assert.equal(doc.status, "indexed");
    const stats = await embeddingsApiStats();
    assert.ok(
      (stats[`flaky:${token}`] ?? 0) >= 2,
      `the 429 was served and then retried: ${JSON.stringify(stats[`flaky:${token}`])}`,
    );
    const found = await search("tomato sunlight", { filter: { source_ids: [id] } });
    assert.equal(found.results[0]?.source_id, id);
  });

  it("when the provider stays down, then retries are bounded and the message is dead-lettered (the emulator never redelivers)", async () => {
    const id = newUid("doc");
    const before = (await embeddingsApiStats()).down ?? 0;
    const messageId = `down-${randomUUID()}`;
    const delivered = await deliver(
      suite.functionsOrigin,
      "embeddingConsumer",
      pubsubEvent(messageId, await request(id, "Always failing. [[down]]")),
    );
    assert.ok(delivered.status < 300, `acked: HTTP ${delivered.status} ${delivered.text}`);
    const letter = await deadLetter(messageId);
    assert.equal(letter.transient, true);
    assert.match(String(letter.error), /HTTP 503/);
    const attempts = ((await embeddingsApiStats()).down ?? 0) - before;
    assert.ok(attempts >= 2 && attempts <= 10, `provider called ${attempts} times: retried, but not in a loop`);
  });

  it("when a knowledge source is deleted, then its chunks are gone and a late request for it is ignored", async () => {
    const id = newUid("doc");
    await ingest(id, GARDEN);
    // A request taken before the delete, still in flight.
    const late = await request(id, RAILWAY);
    const answer = await callFunction<{ deleted_chunks: number }>("deleteKnowledge", { source_id: id }, ADMIN);
    assert.equal(answer.status, 200, JSON.stringify(answer.error));
    assert.ok(answer.result!.deleted_chunks >= 1);
    assert.equal(await (await table()).countRows(`source = '${id}'`), 0);
    assert.equal((await sourceDoc(id))?.status, "deleted");

    // A request published before the delete but delivered after it must not bring the source back.
    const messageId = `late-${randomUUID()}`;
    const delivered = await deliver(suite.functionsOrigin, "embeddingConsumer", pubsubEvent(messageId, late));
    assert.ok(delivered.status < 300, delivered.text);
    assert.equal(await (await table()).countRows(`source = '${id}'`), 0);
    assert.equal((await sourceDoc(id))?.status, "deleted");
    const found = await search("night train sleeper cabins", { filter: { source_ids: [id] } });
    assert.deepEqual(found.results, []);
  });

  it("when a caller is neither admin nor owner, or the input is bad, then the callables refuse and publish nothing", async () => {
    const id = newUid("doc");
    const denied = await callFunction("ingestKnowledge", { source_id: id, text: GARDEN }, { uid: newUid() });
    assert.equal(denied.error?.status, "PERMISSION_DENIED");
    const anonymous = await callFunction("ingestKnowledge", { source_id: id, text: GARDEN });
    assert.equal(anonymous.error?.status, "UNAUTHENTICATED");
    const both = await callFunction<unknown>(
      "ingestKnowledge",
      { source_id: id, text: "a", uri: "gs://bucket/a.txt" },
      ADMIN,
    );
    assert.equal(both.error?.status, "INVALID_ARGUMENT");
    const unknownField = await callFunction("ingestKnowledge", { source_id: id, text: "a", credits_balance: 5 }, ADMIN);
    assert.equal(unknownField.error?.status, "INVALID_ARGUMENT");
    assert.match(JSON.stringify(unknownField.error?.details), /credits_balance/);
    const tooMany = await callFunction("searchKnowledge", { query: "x", k: 51 }, { uid: newUid() });
    assert.equal(tooMany.error?.status, "INVALID_ARGUMENT");
    const deleteDenied = await callFunction("deleteKnowledge", { source_id: id }, { uid: newUid() });
    assert.equal(deleteDenied.error?.status, "PERMISSION_DENIED");
    // Give a wrongly published message time to arrive: the record must still not exist.
    await ingest(newUid("doc"), RAILWAY);
    assert.equal(await sourceDoc(id), undefined);
  });

  it("when asked which tool fits a request, then selectTools ranks the matching tool first", async () => {
    const answer = await callFunction<{ tools: Array<{ function_name: string; score: number }> }>(
      "selectTools",
      { query: "cancel my running podcast job", k: 3 },
      { uid: newUid() },
    );
    assert.equal(answer.status, 200, JSON.stringify(answer.error));
    assert.equal(answer.result!.tools.length, 3);
    assert.equal(answer.result!.tools[0].function_name, "cancelJob");
    const balance = await callFunction<{ tools: Array<{ function_name: string }> }>(
      "selectTools",
      { query: "what is my credit balance" },
      { uid: newUid() },
    );
    assert.equal(balance.result!.tools[0].function_name, "getBalance");
  });
});
