/**
 * Embeddings use cases against real services, called directly: the consumer
 * with the Firestore emulator and a LanceDB folder of its own, and the HTTP
 * providers against local servers speaking the OpenAI and Vertex AI protocols.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { consumeEmbeddingRequest, type ConsumerDeps, type Delivery } from "../../functions/src/embeddings/consume";
import { deleteKnowledge, ingestKnowledge } from "../../functions/src/embeddings/ingest";
import type { EmbeddingRequest } from "../../functions/src/embeddings/schemas";
import { searchKnowledge } from "../../functions/src/embeddings/search";
import { OpenAiCompatibleProvider, VertexAiProvider } from "../../functions/src/embeddings/http-providers";
import { LocalEmbedder, embedText } from "../../functions/src/embeddings/local";
import { readStorageText } from "../../functions/src/embeddings/read-object";
import { ProviderError } from "../../functions/src/embeddings/errors";
import type { EmbedPurpose, EmbeddingProvider } from "../../functions/src/embeddings/provider";
import { openTable, tableName, writeGeneration } from "../../functions/src/embeddings/store";
import { startEmbeddingsApi, type EmbeddingsApi } from "../../scripts/harness/embeddings-api";
import { testFirestore, testLance } from "../support/embeddings";
import { newUid } from "../support/suite";

const API_KEY = "test-key";
const ADMIN = { uid: "knowledge-admin", admin: true };

/**
 * An ingest through the real use case (the source's generation taken on its record), with the published message
 * captured instead of sent: what Pub/Sub would deliver to the consumer.
 */
async function ingestMessage(
  sourceId: string,
  input: { text?: string; uri?: string; metadata?: Record<string, string | number | boolean> },
): Promise<Delivery & { request: EmbeddingRequest }> {
  let published: EmbeddingRequest | undefined;
  const messageId = `m-${randomUUID()}`;
  await ingestKnowledge(
    {
      db: testFirestore(),
      publish: async (_topic, message) => {
        published = message;
        return messageId;
      },
      owners: [],
      clock: { now: () => new Date() },
    },
    { source_id: sourceId, ...input },
    ADMIN,
  );
  assert.ok(published, "the ingest published a message");
  return { messageId, data: Buffer.from(JSON.stringify(published)), request: published };
}

/** The consumer's dependencies on the Firestore emulator and a LanceDB folder of the test's own. */
function consumerDeps(
  folder: string,
  provider: EmbeddingProvider,
  overrides: Partial<ConsumerDeps> = {},
): ConsumerDeps {
  return {
    db: testFirestore(),
    lance: () => testLance(folder),
    provider,
    chunking: { size: 200, overlap: 40 },
    readObject: async () => {
      throw new Error("no storage in this test");
    },
    retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
    maxDeliveries: 3,
    platformRedelivers: true,
    indexThreshold: 1_000_000,
    clock: { now: () => new Date() },
    ...overrides,
  };
}

/** The local embedder, except that document embeddings wait at a gate the test opens: an ingest held mid-flight. */
class GatedEmbedder implements EmbeddingProvider {
  private readonly inner: LocalEmbedder;
  readonly modelId: string;
  readonly dimension: number;
  readonly batchSize: number;
  /** Resolves when an embed call is waiting at the gate. */
  readonly entered: Promise<void>;
  private signalEntered: () => void = () => undefined;
  private opened: Promise<void>;
  open: () => void = () => undefined;

  constructor(dimension: number) {
    this.inner = new LocalEmbedder(dimension);
    this.modelId = this.inner.modelId;
    this.dimension = dimension;
    this.batchSize = this.inner.batchSize;
    this.entered = new Promise((resolve) => (this.signalEntered = resolve));
    this.opened = new Promise((resolve) => (this.open = resolve));
  }

  async embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]> {
    if (purpose === "document") {
      this.signalEntered();
      await this.opened;
    }
    return this.inner.embed(texts, purpose);
  }
}

describe("integration: OpenAI-compatible provider against a local server speaking the API", function () {
  let api: EmbeddingsApi;
  before(async () => {
    api = await startEmbeddingsApi({ dimension: 16, apiKey: API_KEY });
  });
  after(() => api.close());

  const provider = (key = API_KEY, dimension = 16) =>
    new OpenAiCompatibleProvider({ baseUrl: api.url, modelId: "m-test", dimension, batchSize: 8 }, key);

  it("when texts are embedded, then vectors come back in input order even if the server reorders them", async () => {
    const texts = ["first text", "second one", "third"];
    const vectors = await provider().embed(texts, "document");
    assert.deepEqual(
      vectors,
      texts.map((text) => embedText(text, 16)),
    );
  });

  it("when the server answers 400 or 401, then the error is permanent; 429 and 503 are transient", async () => {
    const classify = async (call: Promise<unknown>) => {
      try {
        await call;
        return "ok";
      } catch (error) {
        assert.ok(error instanceof ProviderError);
        return `${error.status}:${error.transient ? "transient" : "permanent"}`;
      }
    };
    assert.equal(await classify(provider().embed(["x [[reject]]"], "document")), "400:permanent");
    assert.equal(await classify(provider("wrong-key").embed(["x"], "document")), "401:permanent");
    assert.equal(
      await classify(provider().embed([`x [[flaky:${randomUUID().slice(0, 8)}]]`], "document")),
      "429:transient",
    );
    assert.equal(await classify(provider().embed(["x [[down]]"], "document")), "503:transient");
  });

  it("when the endpoint does not answer, then the error is transient", async () => {
    const closed = new OpenAiCompatibleProvider(
      { baseUrl: "http://127.0.0.1:9/v1", modelId: "m", dimension: 16, batchSize: 8, timeoutMs: 2000 },
      "",
    );
    await assert.rejects(
      closed.embed(["x"], "query"),
      (error: unknown) => error instanceof ProviderError && error.transient,
    );
  });
});

describe("integration: Vertex AI provider against a local server speaking :predict", () => {
  it("when texts are embedded, then it posts instances with the task type and the token, and reads predictions", async () => {
    const seen: Array<{
      url: string;
      headers: IncomingHttpHeaders;
      body: { instances: Array<{ content: string; task_type: string }>; parameters: Record<string, unknown> };
    }> = [];
    const server = createServer((request, response) => {
      let raw = "";
      request.on("data", (chunk: Buffer) => (raw += chunk.toString()));
      request.on("end", () => {
        const body = JSON.parse(raw) as (typeof seen)[number]["body"];
        seen.push({ url: request.url ?? "", headers: request.headers, body });
        response.writeHead(200, { "content-type": "application/json" });
        response.end(
          JSON.stringify({
            predictions: body.instances.map((_: unknown, i: number) => ({
              embeddings: { values: [i, 1, 0], statistics: { token_count: 1, truncated: false } },
            })),
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const vertex = new VertexAiProvider(
        {
          baseUrl: `http://127.0.0.1:${port}/v1`,
          modelId: "text-embedding-005",
          dimension: 3,
          batchSize: 5,
          project: "demo-p",
          location: "europe-west1",
        },
        async () => "token-123",
      );
      assert.deepEqual(await vertex.embed(["a", "b"], "document"), [
        [0, 1, 0],
        [1, 1, 0],
      ]);
      await vertex.embed(["q"], "query");
      assert.equal(
        seen[0].url,
        "/v1/projects/demo-p/locations/europe-west1/publishers/google/models/text-embedding-005:predict",
      );
      assert.equal(seen[0].headers.authorization, "Bearer token-123");
      assert.deepEqual(seen[0].body.instances, [
        { content: "a", task_type: "RETRIEVAL_DOCUMENT" },
        { content: "b", task_type: "RETRIEVAL_DOCUMENT" },
      ]);
      assert.equal(seen[0].body.parameters.outputDimensionality, 3);
      assert.equal(seen[1].body.instances[0].task_type, "RETRIEVAL_QUERY");
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("integration: embedding consumer with Firestore and LanceDB", function () {
  this.timeout(120_000);
  let api: EmbeddingsApi;
  let folder: string;

  before(async () => {
    api = await startEmbeddingsApi({ dimension: 32 });
  });
  after(() => api.close());
  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), "embeddings-it-"));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const deps = (provider: EmbeddingProvider, overrides: Partial<ConsumerDeps> = {}) =>
    consumerDeps(folder, provider, overrides);
  const message = (sourceId: string, text: string) => ingestMessage(sourceId, { text, metadata: { n: 1 } });
  const source = async (id: string) =>
    (await testFirestore().collection("knowledge_sources").doc(id).get()).data() ?? {};

  it("when the provider keeps failing transiently where the platform redelivers, then each delivery throws until the last, which dead-letters and acks", async () => {
    const id = newUid("doc");
    const remote = new OpenAiCompatibleProvider({ baseUrl: api.url, modelId: "m", dimension: 32, batchSize: 8 }, "");
    const delivery = await message(id, "This will not embed. [[down]]");
    await assert.rejects(consumeEmbeddingRequest(deps(remote), delivery), /HTTP 503/);
    assert.deepEqual([(await source(id)).status, (await source(id)).attempts], ["retrying", 1]);
    await assert.rejects(consumeEmbeddingRequest(deps(remote), delivery), /HTTP 503/);
    assert.equal((await source(id)).attempts, 2);
    assert.equal(await consumeEmbeddingRequest(deps(remote), delivery), "dead-lettered");
    const letter = (
      await testFirestore().collection("dead_letters").doc(`embeddings:${delivery.messageId}`).get()
    ).data();
    assert.equal(letter?.attempts, 3);
    assert.equal(letter?.transient, true);
    assert.equal((await source(id)).status, "failed");
    // A further duplicate delivery of the same message is recognised and does nothing.
    assert.equal(await consumeEmbeddingRequest(deps(remote), delivery), "duplicate");
  });

  it("when a message is redelivered after a crash between the LanceDB write and the record, then re-indexing writes identical rows", async () => {
    const id = newUid("doc");
    const delivery = await message(
      id,
      "First sentence of the document. Second sentence follows here. A third one ends it. ".repeat(6),
    );
    const embedder = new LocalEmbedder(32);
    assert.equal(await consumeEmbeddingRequest(deps(embedder), delivery), "indexed");
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    const snapshot = async () =>
      ((await table.query().where(`source = '${id}'`).toArray()) as Array<Record<string, unknown>>)
        .map((row) =>
          JSON.stringify({
            ...row,
            embedding: Array.from(row.embedding as Iterable<number>),
            metadata_tags: Array.from(row.metadata_tags as Iterable<string>),
          }),
        )
        .sort();
    const before = await snapshot();
    assert.ok(before.length > 1);
    // The crash: neither the source record nor the dedupe marker was written.
    await testFirestore().collection("knowledge_sources").doc(id).delete();
    await testFirestore().collection("processed_events").doc(`embeddings:${delivery.messageId}`).delete();
    assert.equal(await consumeEmbeddingRequest(deps(embedder), delivery), "indexed");
    assert.deepEqual(await snapshot(), before);
  });

  it("when the model changes, then the next ingest re-embeds into the new model's table and removes the source from the old one", async () => {
    const id = newUid("doc");
    const text = "Vectors of different sizes never share a table. Each model gets its own.";
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(32)), await message(id, text)), "indexed");
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(32)), await message(id, text)), "unchanged");
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(64)), await message(id, text)), "indexed");
    const db = await testLance(folder);
    const small = await db.openTable(tableName("knowledge_text", "local-hash-v1", 32));
    const large = await db.openTable(tableName("knowledge_text", "local-hash-v1", 64));
    assert.equal(await small.countRows(`source = '${id}'`), 0);
    assert.equal(await large.countRows(`source = '${id}'`), (await source(id)).chunk_count);
    assert.equal((await source(id)).dims, 64);
  });

  it("when a table grows past the threshold, then a vector index is built, and searches still find the rows", async () => {
    const embedder = new LocalEmbedder(32);
    const text = Array.from({ length: 400 }, (_, i) => `Fact ${i}: item ${i} weighs ${i * 3} grams.`).join(" ");
    const id = newUid("doc");
    assert.equal(
      await consumeEmbeddingRequest(
        deps(embedder, { indexThreshold: 300, chunking: { size: 40, overlap: 0 } }),
        await message(id, text),
      ),
      "indexed",
    );
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    assert.ok((await table.countRows()) >= 300);
    const indices = await table.listIndices();
    assert.ok(
      indices.some((index) => index.columns.includes("embedding")),
      JSON.stringify(indices),
    );
    const [query] = await embedder.embed(["Fact 123: item 123 weighs 369 grams."], "query");
    const hits = await table.vectorSearch(query).distanceType("cosine").limit(5).toArray();
    assert.ok(
      hits.some((hit: { content: string }) => hit.content.includes("item 123 ")),
      "the exact chunk is among the top 5",
    );
  });
});

describe("integration: races between ingests, deletes and the consumer (issue 10 holes 4 and 7)", function () {
  this.timeout(120_000);
  let folder: string;
  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), "embeddings-race-"));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const DIMS = 32;
  const TABLE = tableName("knowledge_text", "local-hash-v1", DIMS);
  const OLD = "The old policy: refunds are paid within thirty days by cheque. Cheques are posted on Fridays.";
  const NEW = "The new policy: refunds arrive within five days by bank transfer. Transfers leave every morning.";
  const deps = (provider: EmbeddingProvider = new LocalEmbedder(DIMS), overrides: Partial<ConsumerDeps> = {}) =>
    consumerDeps(folder, provider, overrides);
  const remove = (sourceId: string) =>
    deleteKnowledge(
      { db: testFirestore(), lance: () => testLance(folder), owners: [], clock: { now: () => new Date() } },
      { source_id: sourceId },
      ADMIN,
    );
  const record = async (id: string) =>
    (await testFirestore().collection("knowledge_sources").doc(id).get()).data() ?? {};
  const rows = async (id: string) => {
    const db = await testLance(folder);
    if (!(await db.tableNames()).includes(TABLE)) return [];
    return (
      (await (await db.openTable(TABLE)).query().where(`source = '${id}'`).toArray()) as Array<{
        content: string;
        generation: number;
      }>
    ).map((row) => ({ content: row.content, generation: Number(row.generation) }));
  };
  /** What a signed-in user's search returns, as the callable runs it. */
  const found = async (query: string, sourceId?: string) =>
    (
      await searchKnowledge(
        {
          db: testFirestore(),
          lance: () => testLance(folder),
          provider: new LocalEmbedder(DIMS),
          retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
        },
        { query, k: 50, ...(sourceId ? { filter: { source_ids: [sourceId] } } : {}) },
      )
    ).results;

  /** A provider of the local model's table whose every embed call fails with `error`. */
  const failing = (error: ProviderError): EmbeddingProvider => ({
    modelId: "local-hash-v1",
    dimension: DIMS,
    batchSize: 8,
    embed: async () => {
      throw error;
    },
  });

  it("when an older ingest finishes after a newer one, then the newer content stays indexed and the older rows are gone", async () => {
    const id = newUid("doc");
    const older = await ingestMessage(id, { text: OLD });
    const newer = await ingestMessage(id, { text: NEW });
    const gated = new GatedEmbedder(DIMS);
    const slow = consumeEmbeddingRequest(deps(gated), older);
    await gated.entered;
    assert.equal(await consumeEmbeddingRequest(deps(), newer), "indexed");
    gated.open();
    assert.equal(await slow, "stale");

    const doc = await record(id);
    assert.equal(doc.status, "indexed");
    assert.equal(doc.live_generation, newer.request.generation);
    assert.equal(doc.last_message_id, newer.messageId);
    const stored = await rows(id);
    assert.equal(stored.length, doc.chunk_count);
    assert.ok(
      stored.every((row) => row.generation === newer.request.generation && row.content.includes("new policy")),
      JSON.stringify(stored),
    );
    const hits = await found("refunds paid by cheque on Fridays", id);
    assert.ok(hits.length > 0 && hits.every((hit) => hit.content.includes("bank transfer")), JSON.stringify(hits));
  });

  it("when an ingest is in flight during deleteKnowledge, then the source stays deleted, unsearchable, with no rows", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "indexed");
    const inFlight = await ingestMessage(id, { text: NEW });
    const gated = new GatedEmbedder(DIMS);
    const slow = consumeEmbeddingRequest(deps(gated), inFlight);
    await gated.entered;
    assert.ok((await remove(id)).deleted_chunks >= 1);
    gated.open();
    assert.equal(await slow, "stale");

    assert.equal((await record(id)).status, "deleted");
    assert.deepEqual(await rows(id), []);
    assert.deepEqual(await found("refunds by bank transfer", id), []);
    assert.ok((await found("refunds by bank transfer every morning")).every((hit) => hit.source_id !== id));
  });

  it("when a delete commits between an ingest's LanceDB write and its record commit, then the ingest loses and none of its rows remain", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "indexed");
    const racing = await ingestMessage(id, { text: NEW });
    const outcome = await consumeEmbeddingRequest(
      deps(undefined, {
        beforeCommit: async () => {
          // Written but not committed: the record does not name these rows, so searches still see only the old ones.
          assert.ok((await rows(id)).some((row) => row.generation === racing.request.generation));
          const hits = await found("refunds by bank transfer", id);
          assert.ok(hits.length > 0 && hits.every((hit) => hit.content.includes("cheque")), JSON.stringify(hits));
          await remove(id);
        },
      }),
      racing,
    );
    assert.equal(outcome, "stale");
    assert.equal((await record(id)).status, "deleted");
    assert.deepEqual(await rows(id), []);
  });

  it("when the consumer crashes between the LanceDB write and the record commit, then search keeps the committed content and the redelivery converges", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "indexed");
    const next = await ingestMessage(id, { text: NEW });
    await assert.rejects(
      consumeEmbeddingRequest(
        deps(undefined, {
          beforeCommit: async () => {
            throw new Error("crash before the record commit");
          },
        }),
        next,
      ),
      /crash before the record commit/,
    );
    const hits = await found("refund policy", id);
    assert.ok(
      hits.length > 0 && hits.every((hit) => hit.content.includes("cheque")),
      "only the committed (old) content is searchable",
    );
    assert.equal(await consumeEmbeddingRequest(deps(), next), "indexed");
    const stored = await rows(id);
    assert.ok(
      stored.length > 0 && stored.every((row) => row.generation === next.request.generation),
      JSON.stringify(stored),
    );
  });

  it("when a table and record predate generations, then the old rows stay searchable until the next ingest replaces them", async () => {
    const id = newUid("doc");
    // The old shape: rows without a generation column, chunk ids {source}#{n}, a record without counters.
    const table = await openTable(await testLance(folder), "knowledge_text", "local-hash-v1", DIMS);
    const [vector] = await new LocalEmbedder(DIMS).embed([OLD], "document");
    await writeGeneration(table, id, 0, [
      {
        chunk_id: `${id}#0`,
        source: id,
        chunk_index: 0,
        content: OLD,
        embedding: vector,
        metadata: "{}",
        metadata_tags: [],
        content_hash: "old",
        requested_at: 1,
        generation: 0,
      },
    ]);
    await table.dropColumns(["generation"]);
    await testFirestore()
      .collection("knowledge_sources")
      .doc(id)
      .set({ source_id: id, status: "indexed", table: TABLE, content_hash: "old", chunk_count: 1 });

    const before = await found("refunds paid by cheque", id);
    assert.deepEqual(
      before.map((hit) => hit.content),
      [OLD],
    );
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: NEW })), "indexed");
    const stored = await rows(id);
    assert.ok(
      stored.length > 0 && stored.every((row) => row.generation === 1 && row.content.includes("new policy")),
      JSON.stringify(stored),
    );
  });

  it("when a message published before generations arrives (a pre-deploy backlog), then it is dead-lettered with its source, changes nothing, and is not retried", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "indexed");
    const before = { record: await record(id), rows: await rows(id) };
    const { generation: _, ...legacy } = (await ingestMessage(id, { text: NEW })).request;
    // The stamp the ingest above took is what a post-deploy request would carry; the backlog message has none.
    const backlog: Delivery = { messageId: `legacy-${randomUUID()}`, data: Buffer.from(JSON.stringify(legacy)) };
    assert.equal(await consumeEmbeddingRequest(deps(), backlog), "dead-lettered");
    const letter = (
      await testFirestore().collection("dead_letters").doc(`embeddings:${backlog.messageId}`).get()
    ).data();
    assert.equal(letter?.source_id, id);
    assert.equal(letter?.transient, false);
    assert.match(String(letter?.error), /before generations existed \(no generation\).*re-ingest source/);
    const { generation: __, ...recordBefore } = before.record;
    const { generation: ___, ...recordAfter } = await record(id);
    assert.deepEqual(recordAfter, recordBefore, "the source record is untouched");
    assert.deepEqual(await rows(id), before.rows, "LanceDB is untouched");
    // A redelivery of it is a duplicate, not a retry.
    assert.equal(await consumeEmbeddingRequest(deps(), backlog), "duplicate");
    // Without a generation and otherwise malformed: still a malformed message, with no source.
    const broken: Delivery = {
      messageId: `legacy-${randomUUID()}`,
      data: Buffer.from(JSON.stringify({ ...legacy, text: undefined })),
    };
    assert.equal(await consumeEmbeddingRequest(deps(), broken), "dead-lettered");
    const brokenLetter = (
      await testFirestore().collection("dead_letters").doc(`embeddings:${broken.messageId}`).get()
    ).data();
    assert.match(String(brokenLetter?.error), /^malformed message/);
  });

  it("when a failed request is followed by one whose content is already live, then the source is indexed again without a write", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "indexed");
    const rejecting = failing(new ProviderError("provider answered HTTP 400: rejected", false, 400));
    assert.equal(
      await consumeEmbeddingRequest(deps(rejecting), await ingestMessage(id, { text: NEW })),
      "dead-lettered",
    );
    assert.equal((await record(id)).status, "failed");
    assert.equal(await consumeEmbeddingRequest(deps(), await ingestMessage(id, { text: OLD })), "unchanged");
    const doc = await record(id);
    assert.deepEqual([doc.status, doc.error, doc.live_generation, doc.applied_generation], ["indexed", null, 1, 3]);
  });

  it("when two failing messages for one source are redelivered alternately, then each is dead-lettered at the delivery limit", async () => {
    const id = newUid("doc");
    const down = failing(new ProviderError("provider answered HTTP 503: down", true, 503));
    const first = await ingestMessage(id, { text: OLD });
    const second = await ingestMessage(id, { text: NEW });
    for (let delivery = 1; delivery < 3; delivery++) {
      await assert.rejects(consumeEmbeddingRequest(deps(down), first), /HTTP 503/);
      await assert.rejects(consumeEmbeddingRequest(deps(down), second), /HTTP 503/);
    }
    assert.equal(await consumeEmbeddingRequest(deps(down), first), "dead-lettered");
    assert.equal(await consumeEmbeddingRequest(deps(down), second), "dead-lettered");
    for (const message of [first, second]) {
      const letter = (
        await testFirestore().collection("dead_letters").doc(`embeddings:${message.messageId}`).get()
      ).data();
      assert.equal(letter?.attempts, 3, `dead letter of ${message.messageId}`);
      assert.equal(letter?.source_id, id);
    }
    assert.equal((await record(id)).status, "failed");
  });
});

/**
 * A local server speaking the part of the Cloud Storage JSON API the Admin SDK
 * uses in emulator mode (object metadata and `alt=media` downloads). The
 * firebase-tools Storage emulator cannot run offline: it downloads its rules
 * runtime jar at start.
 */
async function startStorageApi(objects: Record<string, string>) {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const match = /^\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
    const key = match ? `${match[1]}/${decodeURIComponent(match[2])}` : "";
    const body = objects[key];
    if (body === undefined) {
      response.writeHead(404, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: 404, message: "No such object." } }));
    } else if (url.searchParams.get("alt") === "media") {
      response.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      response.end(body);
    } else {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          kind: "storage#object",
          bucket: match![1],
          name: decodeURIComponent(match![2]),
          size: String(Buffer.byteLength(body)),
        }),
      );
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("integration: ingesting from Cloud Storage (gs:// URIs)", function () {
  this.timeout(60_000);
  const bucket = "knowledge-bucket";
  const text = "Invoices are archived for seven years. Refunds are issued within five business days.";
  let storage: Awaited<ReturnType<typeof startStorageApi>>;
  let folder: string;
  before(async () => {
    storage = await startStorageApi({ [`${bucket}/docs/policy é.txt`]: text });
    // firebase-admin/storage reads this when the first Storage client is created (here, by readStorageText).
    process.env.FIREBASE_STORAGE_EMULATOR_HOST = storage.host;
    folder = mkdtempSync(path.join(os.tmpdir(), "embeddings-gcs-"));
  });
  after(async () => {
    await storage.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const deps = () => consumerDeps(folder, new LocalEmbedder(32), { readObject: readStorageText });
  const uriMessage = (sourceId: string, uri: string) => ingestMessage(sourceId, { uri });

  it("when a source names a gs:// object, then its text is read and indexed", async () => {
    const id = newUid("doc");
    assert.equal(
      await consumeEmbeddingRequest(deps(), await uriMessage(id, `gs://${bucket}/docs/policy é.txt`)),
      "indexed",
    );
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    const rows = (await table.query().where(`source = '${id}'`).toArray()) as Array<{ content: string }>;
    assert.equal(rows.map((row) => row.content).join(" "), text);
  });

  it("when the object does not exist, then the message is dead-lettered at once as a permanent failure", async () => {
    const id = newUid("doc");
    const delivery = await uriMessage(id, `gs://${bucket}/docs/missing.txt`);
    assert.equal(await consumeEmbeddingRequest(deps(), delivery), "dead-lettered");
    const letter = (
      await testFirestore().collection("dead_letters").doc(`embeddings:${delivery.messageId}`).get()
    ).data();
    assert.equal(letter?.transient, false);
    assert.equal(letter?.attempts, 1);
    assert.match(String(letter?.error), /HTTP 404/);
  });
});
