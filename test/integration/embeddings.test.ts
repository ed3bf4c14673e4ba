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
import { consumeEmbeddingRequest, type ConsumerDeps } from "../../functions/src/embeddings/consume";
import { OpenAiCompatibleProvider, VertexAiProvider } from "../../functions/src/embeddings/http-providers";
import { LocalEmbedder, embedText } from "../../functions/src/embeddings/local";
import { readStorageText } from "../../functions/src/embeddings/runtime";
import { ProviderError, type EmbeddingProvider } from "../../functions/src/embeddings/provider";
import { tableName } from "../../functions/src/embeddings/store";
import { startEmbeddingsApi, type EmbeddingsApi } from "../../scripts/harness/embeddings-api";
import { testFirestore, testLance } from "../support/embeddings";
import { newUid } from "../support/suite";

const API_KEY = "test-key";

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
    assert.deepEqual(vectors, texts.map((text) => embedText(text, 16)));
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
    assert.equal(await classify(provider().embed([`x [[flaky:${randomUUID().slice(0, 8)}]]`], "document")), "429:transient");
    assert.equal(await classify(provider().embed(["x [[down]]"], "document")), "503:transient");
  });

  it("when the endpoint does not answer, then the error is transient", async () => {
    const closed = new OpenAiCompatibleProvider({ baseUrl: "http://127.0.0.1:9/v1", modelId: "m", dimension: 16, batchSize: 8, timeoutMs: 2000 }, "");
    await assert.rejects(closed.embed(["x"], "query"), (error: unknown) => error instanceof ProviderError && error.transient);
  });
});

describe("integration: Vertex AI provider against a local server speaking :predict", () => {
  it("when texts are embedded, then it posts instances with the task type and the token, and reads predictions", async () => {
    const seen: Array<{ url: string; headers: IncomingHttpHeaders; body: { instances: Array<{ content: string; task_type: string }>; parameters: Record<string, unknown> } }> = [];
    const server = createServer((request, response) => {
      let raw = "";
      request.on("data", (chunk: Buffer) => (raw += chunk.toString()));
      request.on("end", () => {
        const body = JSON.parse(raw);
        seen.push({ url: request.url ?? "", headers: request.headers, body });
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ predictions: body.instances.map((_: unknown, i: number) => ({ embeddings: { values: [i, 1, 0], statistics: { token_count: 1, truncated: false } } })) }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const vertex = new VertexAiProvider(
        { baseUrl: `http://127.0.0.1:${port}/v1`, modelId: "text-embedding-005", dimension: 3, batchSize: 5, project: "demo-p", location: "europe-west1" },
        async () => "token-123",
      );
      assert.deepEqual(await vertex.embed(["a", "b"], "document"), [[0, 1, 0], [1, 1, 0]]);
      await vertex.embed(["q"], "query");
      assert.equal(seen[0].url, "/v1/projects/demo-p/locations/europe-west1/publishers/google/models/text-embedding-005:predict");
      assert.equal(seen[0].headers.authorization, "Bearer token-123");
      assert.deepEqual(seen[0].body.instances, [{ content: "a", task_type: "RETRIEVAL_DOCUMENT" }, { content: "b", task_type: "RETRIEVAL_DOCUMENT" }]);
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

  const deps = (provider: EmbeddingProvider, overrides: Partial<ConsumerDeps> = {}): ConsumerDeps => ({
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
  });
  const message = (sourceId: string, text: string) => ({
    messageId: `m-${randomUUID()}`,
    data: Buffer.from(JSON.stringify({ op: "ingest", source_id: sourceId, text, metadata: { n: 1 }, requested_by: "t", requested_at: Date.now() })),
  });
  const source = async (id: string) => (await testFirestore().collection("knowledge_sources").doc(id).get()).data() ?? {};

  it("when the provider keeps failing transiently where the platform redelivers, then each delivery throws until the last, which dead-letters and acks", async () => {
    const id = newUid("doc");
    const remote = new OpenAiCompatibleProvider({ baseUrl: api.url, modelId: "m", dimension: 32, batchSize: 8 }, "");
    const delivery = message(id, "This will not embed. [[down]]");
    await assert.rejects(consumeEmbeddingRequest(deps(remote), delivery), /HTTP 503/);
    assert.deepEqual([(await source(id)).status, (await source(id)).attempts], ["retrying", 1]);
    await assert.rejects(consumeEmbeddingRequest(deps(remote), delivery), /HTTP 503/);
    assert.equal((await source(id)).attempts, 2);
    assert.equal(await consumeEmbeddingRequest(deps(remote), delivery), "dead-lettered");
    const letter = (await testFirestore().collection("dead_letters").doc(`embeddings:${delivery.messageId}`).get()).data();
    assert.equal(letter?.attempts, 3);
    assert.equal(letter?.transient, true);
    assert.equal((await source(id)).status, "failed");
    // A further duplicate delivery of the same message is recognised and does nothing.
    assert.equal(await consumeEmbeddingRequest(deps(remote), delivery), "duplicate");
  });

  it("when a message is redelivered after a crash between the LanceDB write and the record, then re-indexing writes identical rows", async () => {
    const id = newUid("doc");
    const delivery = message(id, "First sentence of the document. Second sentence follows here. A third one ends it. ".repeat(6));
    const embedder = new LocalEmbedder(32);
    assert.equal(await consumeEmbeddingRequest(deps(embedder), delivery), "indexed");
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    const snapshot = async () =>
      ((await table.query().where(`source = '${id}'`).toArray()) as Array<Record<string, unknown>>)
        .map((row) => JSON.stringify({ ...row, embedding: Array.from(row.embedding as Iterable<number>), metadata_tags: Array.from(row.metadata_tags as Iterable<string>) }))
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
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(32)), message(id, text)), "indexed");
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(32)), message(id, text)), "unchanged");
    assert.equal(await consumeEmbeddingRequest(deps(new LocalEmbedder(64)), message(id, text)), "indexed");
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
    assert.equal(await consumeEmbeddingRequest(deps(embedder, { indexThreshold: 300, chunking: { size: 40, overlap: 0 } }), message(id, text)), "indexed");
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    assert.ok((await table.countRows()) >= 300);
    const indices = await table.listIndices();
    assert.ok(indices.some((index) => index.columns.includes("embedding")), JSON.stringify(indices));
    const [query] = await embedder.embed(["Fact 123: item 123 weighs 369 grams."], "query");
    const hits = await table.vectorSearch(query).distanceType("cosine").limit(5).toArray();
    assert.ok(hits.some((hit: { content: string }) => hit.content.includes("item 123 ")), "the exact chunk is among the top 5");
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
      response.end(JSON.stringify({ kind: "storage#object", bucket: match![1], name: decodeURIComponent(match![2]), size: String(Buffer.byteLength(body)) }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
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

  const deps = (): ConsumerDeps => ({
    db: testFirestore(),
    lance: () => testLance(folder),
    provider: new LocalEmbedder(32),
    chunking: { size: 200, overlap: 40 },
    readObject: readStorageText,
    retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
    maxDeliveries: 3,
    platformRedelivers: true,
    indexThreshold: 1_000_000,
    clock: { now: () => new Date() },
  });
  const uriMessage = (sourceId: string, uri: string) => ({
    messageId: `m-${randomUUID()}`,
    data: Buffer.from(JSON.stringify({ op: "ingest", source_id: sourceId, uri, metadata: {}, requested_by: "t", requested_at: Date.now() })),
  });

  it("when a source names a gs:// object, then its text is read and indexed", async () => {
    const id = newUid("doc");
    assert.equal(await consumeEmbeddingRequest(deps(), uriMessage(id, `gs://${bucket}/docs/policy é.txt`)), "indexed");
    const table = await (await testLance(folder)).openTable(tableName("knowledge_text", "local-hash-v1", 32));
    const rows = (await table.query().where(`source = '${id}'`).toArray()) as Array<{ content: string }>;
    assert.equal(rows.map((row) => row.content).join(" "), text);
  });

  it("when the object does not exist, then the message is dead-lettered at once as a permanent failure", async () => {
    const id = newUid("doc");
    const delivery = uriMessage(id, `gs://${bucket}/docs/missing.txt`);
    assert.equal(await consumeEmbeddingRequest(deps(), delivery), "dead-lettered");
    const letter = (await testFirestore().collection("dead_letters").doc(`embeddings:${delivery.messageId}`).get()).data();
    assert.equal(letter?.transient, false);
    assert.equal(letter?.attempts, 1);
    assert.match(String(letter?.error), /HTTP 404/);
  });
});
