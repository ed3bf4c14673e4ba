/**
 * The `embedding-requests` consumer: one message in, at most one LanceDB
 * commit out, and a `knowledge_sources/{source_id}` record of the outcome.
 *
 * Failure handling, so no message is retried in a tight loop or lost:
 * - malformed messages and permanent failures (provider 4xx, missing object)
 *   go to `dead_letters` at once and the message is acked;
 * - transient failures (429, 5xx, timeouts, network, storage hiccups) are
 *   first retried within the delivery with capped exponential backoff; if they
 *   persist, the delivery count of the message (kept on the source's record)
 *   decides: below the limit the handler throws so the platform redelivers it
 *   later (Cloud Functions with `retry: true`, with Pub/Sub's backoff); at the
 *   limit, or where nothing redelivers (the local emulator acks every message
 *   whatever the function does), it is dead-lettered and acked.
 */
import { createHash } from "node:crypto";
import type { Connection } from "@lancedb/lancedb";
import { FieldValue, type Firestore } from "firebase-admin/firestore";
import { runOnce } from "../shared/dedupe";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { CONSUMER, DEAD_LETTERS, EMBEDDING_TOPIC, KNOWLEDGE_SOURCES } from "./constants";
import { CHUNKER_VERSION, chunkText, type ChunkSettings } from "./chunking";
import { metadataTags } from "./filter";
import { ProviderError, embedAll, type EmbeddingProvider, type RetryPolicy } from "./provider";
import { EmbeddingRequest } from "./schemas";
import { maintainVectorIndex, openTable, replaceSource, tableName, type ChunkRow } from "./store";

export { CONSUMER, DEAD_LETTERS, KNOWLEDGE_SOURCES };

/** A failure that no retry can fix (missing object, bad configuration). */
export class PermanentFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PermanentFailure";
  }
}

export interface ConsumerDeps {
  db: Firestore;
  lance: () => Promise<Connection>;
  provider: EmbeddingProvider;
  chunking: ChunkSettings;
  /** Reads a `gs://` object as UTF-8 text; throws PermanentFailure when it does not exist. */
  readObject: (uri: string) => Promise<string>;
  retry: RetryPolicy;
  maxDeliveries: number;
  /** False where a thrown error is not redelivered (the emulator): the first delivery is then also the last. */
  platformRedelivers: boolean;
  indexThreshold: number;
  clock: Clock;
}

export interface Delivery {
  messageId: string;
  /** The message body as published (bytes). */
  data: Buffer;
  /** When Pub/Sub accepted the message; gives the delivery lag recorded on the source. */
  publishTime?: Date;
}

export type Outcome = "indexed" | "unchanged" | "stale" | "dead-lettered" | "duplicate" | "in-progress";

/** Handles one delivery. Throws only to ask the platform for a redelivery (transient failure below the limit). */
export async function consumeEmbeddingRequest(deps: ConsumerDeps, delivery: Delivery): Promise<Outcome> {
  let outcome: Outcome = "duplicate";
  const once = await runOnce(
    deps.db,
    CONSUMER,
    delivery.messageId,
    async () => {
      outcome = await handle(deps, delivery);
    },
    // A delivery can embed for minutes; the lease must outlast it so a duplicate does not start alongside.
    { leaseMs: 600_000, clock: deps.clock },
  );
  // Another delivery holds the lease (or crashed holding it): ask for a redelivery instead of acking,
  // so the message is processed once the lease is over.
  if (once === "in-progress") throw new Error(`message ${delivery.messageId} is being processed by another delivery; retry later`);
  return once === "done" ? outcome : once;
}

async function handle(deps: ConsumerDeps, delivery: Delivery): Promise<Outcome> {
  const started = performance.now();
  const queueMs = delivery.publishTime ? Math.max(0, deps.clock.now().getTime() - delivery.publishTime.getTime()) : null;
  const request = parseRequest(delivery.data);
  if (typeof request === "string") {
    await deadLetter(deps, delivery.messageId, undefined, `malformed message: ${request}`, 1, false);
    return "dead-lettered";
  }
  const sourceRef = deps.db.collection(KNOWLEDGE_SOURCES).doc(request.source_id);
  const current = (await sourceRef.get()).data() ?? {};
  if (isStale(request, current)) {
    logs.embeddingSkipped(delivery.messageId, request.source_id, "stale");
    return "stale";
  }
  try {
    return await index(deps, delivery, request, current, { started, queueMs });
  } catch (error) {
    return failed(deps, delivery, request, error);
  }
}

/** A request older than what was last applied (or than a delete) must not undo it. */
function isStale(request: EmbeddingRequest, current: Record<string, unknown>): boolean {
  const appliedAt = typeof current.requested_at === "number" ? current.requested_at : -1;
  const deletedAt = typeof current.deleted_at === "number" ? current.deleted_at : -1;
  return request.requested_at < appliedAt || request.requested_at <= deletedAt;
}

async function index(
  deps: ConsumerDeps,
  delivery: Delivery,
  request: EmbeddingRequest,
  current: Record<string, unknown>,
  timing: { started: number; queueMs: number | null },
): Promise<Outcome> {
  const { provider } = deps;
  const text = request.text ?? (await deps.readObject(request.uri ?? ""));
  const contentHash = hashContent(text, provider, deps.chunking, request.metadata);
  const table = tableName("knowledge_text", provider.modelId, provider.dimension);
  const sourceRef = deps.db.collection(KNOWLEDGE_SOURCES).doc(request.source_id);

  if (current.status === "indexed" && current.content_hash === contentHash && current.table === table) {
    await sourceRef.update({ requested_at: request.requested_at, last_message_id: delivery.messageId, checked_at: FieldValue.serverTimestamp() });
    logs.embeddingSkipped(delivery.messageId, request.source_id, "unchanged");
    return "unchanged";
  }

  const chunks = chunkText(text, deps.chunking);
  const prepareMs = performance.now() - timing.started;
  const embedStart = performance.now();
  const vectors = await embedAll(provider, chunks, "document", deps.retry);
  const embedMs = performance.now() - embedStart;

  const writeStart = performance.now();
  const tags = metadataTags(request.metadata);
  const metadataJson = JSON.stringify(request.metadata);
  const rows: ChunkRow[] = chunks.map((content, i) => ({
    chunk_id: `${request.source_id}#${i}`,
    source: request.source_id,
    chunk_index: i,
    content,
    embedding: vectors[i],
    metadata: metadataJson,
    metadata_tags: tags,
    content_hash: contentHash,
    requested_at: request.requested_at,
  }));
  const db = await deps.lance();
  const target = await openTable(db, "knowledge_text", provider.modelId, provider.dimension);
  const version = await replaceSource(target, request.source_id, rows);
  // The model changed since the last index: the old model's table must not keep serving this source.
  if (typeof current.table === "string" && current.table !== table && (await db.tableNames()).includes(current.table)) {
    await replaceSource(await db.openTable(current.table), request.source_id, []);
  }
  // The index only speeds searches up; failing to build it must not fail (and redeliver) a message whose rows are written.
  const indexAction = await maintainVectorIndex(target, deps.indexThreshold, provider.dimension).catch((error: unknown) => {
    logs.unexpectedError("vector index maintenance", error);
    return "failed" as const;
  });
  const writeMs = performance.now() - writeStart;

  await sourceRef.set({
    source_id: request.source_id,
    status: "indexed",
    content_hash: contentHash,
    chunk_count: rows.length,
    embedding_model: provider.modelId,
    dims: provider.dimension,
    table,
    table_version: version ?? null,
    metadata: request.metadata,
    requested_by: request.requested_by,
    requested_at: request.requested_at,
    deleted_at: FieldValue.delete(),
    last_message_id: delivery.messageId,
    attempts: 0,
    error: null,
    // Where a delivery's time went: waiting in Pub/Sub, reading + hashing + chunking, the provider, LanceDB.
    queue_ms: timing.queueMs,
    prepare_ms: round(prepareMs),
    embed_ms: round(embedMs),
    write_ms: round(writeMs),
    indexed_at: FieldValue.serverTimestamp(),
  }, { merge: true });
  logs.embeddingIndexed({
    message_id: delivery.messageId,
    source_id: request.source_id,
    chunks: rows.length,
    model: provider.modelId,
    table_version: version ?? null,
    index_action: indexAction,
  });
  return "indexed";
}

/** Decides between redelivery and the dead-letter collection (see the module comment). */
async function failed(deps: ConsumerDeps, delivery: Delivery, request: EmbeddingRequest, error: unknown): Promise<Outcome> {
  const message = describe(error);
  const transient = !(error instanceof PermanentFailure) && !(error instanceof ProviderError && !error.transient);
  const sourceRef = deps.db.collection(KNOWLEDGE_SOURCES).doc(request.source_id);
  const attempts = await deps.db.runTransaction(async (tx) => {
    const snapshot = await tx.get(sourceRef);
    const previous = snapshot.get("pending_message_id") === delivery.messageId ? Number(snapshot.get("pending_attempts") ?? 0) : 0;
    const count = previous + 1;
    tx.set(sourceRef, { source_id: request.source_id, pending_message_id: delivery.messageId, pending_attempts: count }, { merge: true });
    return count;
  });
  const lastChance = !transient || !deps.platformRedelivers || attempts >= deps.maxDeliveries;
  if (!lastChance) {
    await sourceRef.set({ status: "retrying", error: message, attempts }, { merge: true });
    logs.embeddingRetry(delivery.messageId, request.source_id, attempts, message);
    throw error instanceof Error ? error : new Error(message);
  }
  await deadLetter(deps, delivery.messageId, request.source_id, message, attempts, transient);
  await sourceRef.set({ status: "failed", error: message, attempts, last_message_id: delivery.messageId }, { merge: true });
  return "dead-lettered";
}

async function deadLetter(
  deps: ConsumerDeps,
  messageId: string,
  sourceId: string | undefined,
  error: string,
  attempts: number,
  transient: boolean,
): Promise<void> {
  // Keyed by the message id: a redelivered poison message writes the same entry again.
  await deps.db
    .collection(DEAD_LETTERS)
    .doc(`${CONSUMER}:${messageId}`.replace(/\//g, "_"))
    .set({
      consumer: CONSUMER,
      topic: EMBEDDING_TOPIC,
      message_id: messageId,
      source_id: sourceId ?? null,
      error,
      attempts,
      transient,
      created_at: FieldValue.serverTimestamp(),
    });
  logs.embeddingDeadLettered(messageId, sourceId, attempts, error);
}

/** The request, or a one-line reason it is not one. */
function parseRequest(data: Buffer): EmbeddingRequest | string {
  let json: unknown;
  try {
    json = JSON.parse(data.toString("utf8"));
  } catch {
    return "not JSON";
  }
  const parsed = EmbeddingRequest.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  return `${issue?.path.join(".") || "message"}: ${issue?.message ?? "invalid"}`;
}

/** What decides whether re-indexing is needed: the text, the model and the chunking (and the metadata stored on rows). */
export function hashContent(text: string, provider: EmbeddingProvider, chunking: ChunkSettings, metadata: Record<string, unknown>): string {
  const canonicalMetadata = Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => a.localeCompare(b)));
  return createHash("sha256")
    .update(
      JSON.stringify({
        model: provider.modelId,
        dims: provider.dimension,
        chunker: CHUNKER_VERSION,
        size: chunking.size,
        overlap: chunking.overlap,
        metadata: canonicalMetadata,
      }),
    )
    .update("\u0000")
    .update(text)
    .digest("hex");
}

const round = (ms: number) => Math.round(ms * 10) / 10;

function describe(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.split("\n")[0].slice(0, 500);
}
