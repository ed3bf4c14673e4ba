/**
 * The `embedding-requests` consumer: one message in, its rows written to
 * LanceDB under the request's generation, and a `knowledge_sources/{source_id}`
 * record of the outcome, committed only if the source still expects this
 * request (sources.ts). A request that loses that race removes its own rows.
 *
 * Failure handling, so no message is retried in a tight loop or lost:
 * - malformed messages and permanent failures (provider 4xx, missing object)
 *   go to `dead_letters` at once and the message is acked;
 * - transient failures (429, 5xx, timeouts, network, storage hiccups) are
 *   first retried within the delivery with capped exponential backoff; if they
 *   persist, the delivery count of the message (one counter per message id)
 *   decides: below the limit the handler throws so the platform redelivers it
 *   later (Cloud Functions with `retry: true`, with Pub/Sub's backoff); at the
 *   limit, or where nothing redelivers (the local emulator acks every message
 *   whatever the function does), it is dead-lettered and acked.
 */
import { createHash } from "node:crypto";
import type { Connection, Table } from "@lancedb/lancedb";
import { FieldValue, type Firestore } from "firebase-admin/firestore";
import { markerRef, runOnce } from "../shared/dedupe";
import { logs } from "../shared/logs";
import { DAY_MS, type Clock } from "../shared/time";
import { recordDeadLetter } from "../shared/dead-letters";
import { CONSUMER, DEAD_LETTERS, EMBEDDING_TOPIC, KNOWLEDGE_SOURCES } from "./constants";
import { CHUNKER_VERSION, chunkText, type ChunkSettings } from "./chunking";
import { metadataTags } from "./filter";
import { PermanentFailure, ProviderError } from "./errors";
import { embedAll, type EmbeddingProvider, type RetryPolicy } from "./provider";
import { EmbeddingRequest } from "./schemas";
import { expects, readInTransaction, sourceRef, sourceState, type SourceState } from "./sources";
import {
  chunkId,
  existingTable,
  existingTableNamed,
  maintainVectorIndex,
  openTable,
  removeGenerations,
  tableName,
  writeGeneration,
  type ChunkRow,
} from "./store";

export { CONSUMER, DEAD_LETTERS, KNOWLEDGE_SOURCES };

/** Delivery counts live in `processed_events/{ATTEMPTS}:{message_id}`, swept by retention like the markers. */
const ATTEMPTS = `${CONSUMER}-attempts`;
/** Longer than Pub/Sub keeps a message (7 days), so a count is never forgotten while redeliveries may come. */
const ATTEMPTS_RETAIN_MS = 8 * DAY_MS;

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
  /** Runs between the LanceDB write and the record commit: lets tests put a delete or a crash exactly there. */
  beforeCommit?: (request: EmbeddingRequest) => Promise<void>;
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
  if (once === "in-progress")
    throw new Error(`message ${delivery.messageId} is being processed by another delivery; retry later`);
  return once === "done" ? outcome : once;
}

async function handle(deps: ConsumerDeps, delivery: Delivery): Promise<Outcome> {
  const started = performance.now();
  const queueMs = delivery.publishTime
    ? Math.max(0, deps.clock.now().getTime() - delivery.publishTime.getTime())
    : null;
  const request = parseRequest(delivery.data);
  if (typeof request === "string") {
    await deadLetter(deps, delivery.messageId, undefined, `malformed message: ${request}`, 1, false);
    return "dead-lettered";
  }
  if ("withoutGeneration" in request) {
    // Published before generations existed (a pre-deploy backlog): it cannot be placed among the source's
    // requests, so it may be older than an ingest or delete made since; applying it could index old or deleted
    // text (issue 10, hole 4). It is never applied: dead-lettered with its source, for a re-ingest.
    const sourceId = request.withoutGeneration;
    await deadLetter(deps, delivery.messageId, sourceId, `${NO_GENERATION}; re-ingest source ${sourceId}`, 1, false);
    return "dead-lettered";
  }
  const current = sourceState(await sourceRef(deps.db, request.source_id).get());
  try {
    if (!expects(current, request.generation)) return await stale(deps, delivery, request, current);
    return await index(deps, delivery, request, current, { started, queueMs });
  } catch (error) {
    return failed(deps, delivery, request, error);
  }
}

/**
 * A request the source no longer expects (a newer one was applied, or a delete came after it) changes nothing,
 * and removes the rows it may have written on an earlier delivery that crashed before its record commit.
 */
async function stale(
  deps: ConsumerDeps,
  delivery: Delivery,
  request: EmbeddingRequest,
  state: SourceState,
): Promise<Outcome> {
  if (state.live_generation !== request.generation) {
    const table = await existingTable(
      await deps.lance(),
      "knowledge_text",
      deps.provider.modelId,
      deps.provider.dimension,
    );
    if (table) await removeGenerations(table, request.source_id, { only: request.generation });
  }
  logs.embeddingSkipped(delivery.messageId, request.source_id, "stale");
  return "stale";
}

async function index(
  deps: ConsumerDeps,
  delivery: Delivery,
  request: EmbeddingRequest,
  current: SourceState,
  timing: { started: number; queueMs: number | null },
): Promise<Outcome> {
  const { provider } = deps;
  const text = request.text ?? (await deps.readObject(request.uri ?? ""));
  const contentHash = hashContent(text, provider, deps.chunking, request.metadata);
  const table = tableName("knowledge_text", provider.modelId, provider.dimension);
  const ref = sourceRef(deps.db, request.source_id);

  if (current.live_generation !== undefined && current.content_hash === contentHash && current.table === table) {
    // The live rows already hold this content: record that this request is applied, without a LanceDB write.
    const unchanged = await deps.db.runTransaction(async (tx) => {
      const state = await readInTransaction(tx, deps.db, request.source_id);
      if (!expects(state, request.generation)) return { outcome: "stale" as const, state };
      if (
        state.live_generation !== current.live_generation ||
        state.content_hash !== contentHash ||
        state.table !== table
      ) {
        return { outcome: "changed" as const, state };
      }
      tx.update(ref, {
        // Applied: an earlier request's failure no longer describes the source.
        status: "indexed",
        error: null,
        attempts: 0,
        applied_generation: Math.max(state.applied_generation, request.generation),
        requested_at: request.requested_at,
        last_message_id: delivery.messageId,
        checked_at: FieldValue.serverTimestamp(),
      });
      return { outcome: "unchanged" as const, state };
    });
    if (unchanged.outcome === "stale") return stale(deps, delivery, request, unchanged.state);
    if (unchanged.outcome === "unchanged") {
      logs.embeddingSkipped(delivery.messageId, request.source_id, "unchanged");
      return "unchanged";
    }
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
    chunk_id: chunkId(request.source_id, request.generation, i),
    source: request.source_id,
    chunk_index: i,
    content,
    embedding: vectors[i],
    metadata: metadataJson,
    metadata_tags: tags,
    content_hash: contentHash,
    requested_at: request.requested_at,
    generation: request.generation,
  }));
  const db = await deps.lance();
  const target = await openTable(db, "knowledge_text", provider.modelId, provider.dimension);
  // Written under this request's generation, beside the live rows: not searchable until the record names it.
  const version = await writeGeneration(target, request.source_id, request.generation, rows);
  // The index only speeds searches up; failing to build it must not fail (and redeliver) a message whose rows are written.
  const indexAction = await maintainVectorIndex(target, deps.indexThreshold, provider.dimension).catch(
    (error: unknown) => {
      logs.unexpectedError("vector index maintenance", error);
      return "failed" as const;
    },
  );
  const writeMs = performance.now() - writeStart;
  await deps.beforeCommit?.(request);

  // The commit: only if the source still expects this request, decided on the record in the transaction that updates it.
  const commit = await deps.db.runTransaction(async (tx) => {
    const state = await readInTransaction(tx, deps.db, request.source_id);
    if (!expects(state, request.generation)) return { won: false as const, state };
    tx.set(
      ref,
      {
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
        applied_generation: request.generation,
        live_generation: request.generation,
        last_message_id: delivery.messageId,
        attempts: 0,
        error: null,
        // Where a delivery's time went: waiting in Pub/Sub, reading + hashing + chunking, the provider, LanceDB.
        queue_ms: timing.queueMs,
        prepare_ms: round(prepareMs),
        embed_ms: round(embedMs),
        write_ms: round(writeMs),
        indexed_at: FieldValue.serverTimestamp(),
      },
      { merge: true },
    );
    return { won: true as const, state };
  });
  if (!commit.won) return stale(deps, delivery, request, commit.state);

  await removeSuperseded(db, target, request, commit.state.table);
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

/**
 * After the record names this request's rows: the rows of older generations go, from this table and from the
 * table of the model the source was indexed with before. A failure here is logged, not retried: those rows are
 * no longer searchable, and the next commit or delete for the source removes them.
 */
async function removeSuperseded(
  db: Connection,
  target: Table,
  request: EmbeddingRequest,
  previousTable: string | undefined,
): Promise<void> {
  const older = { before: request.generation };
  try {
    await removeGenerations(target, request.source_id, older);
    if (previousTable !== undefined && previousTable !== target.name) {
      const previous = await existingTableNamed(db, previousTable);
      if (previous) await removeGenerations(previous, request.source_id, older);
    }
  } catch (error) {
    logs.unexpectedError("removing superseded knowledge rows", error);
  }
}

/**
 * Decides between redelivery and the dead-letter collection (see the module comment). Deliveries are counted
 * per message, so failing messages for one source each reach the limit; the source record shows the failure only
 * while it still expects this request.
 */
async function failed(
  deps: ConsumerDeps,
  delivery: Delivery,
  request: EmbeddingRequest,
  error: unknown,
): Promise<Outcome> {
  const message = describe(error);
  const transient = !(error instanceof PermanentFailure) && !(error instanceof ProviderError && !error.transient);
  const attemptsRef = markerRef(deps.db, ATTEMPTS, delivery.messageId);
  const { attempts, lastChance } = await deps.db.runTransaction(async (tx) => {
    const [counted, state] = await Promise.all([
      tx.get(attemptsRef),
      readInTransaction(tx, deps.db, request.source_id),
    ]);
    const count = Number(counted.get("attempts") ?? 0) + 1;
    const last = !transient || !deps.platformRedelivers || count >= deps.maxDeliveries;
    const now = deps.clock.now();
    tx.set(attemptsRef, {
      consumer: CONSUMER,
      event_id: delivery.messageId,
      attempts: count,
      updated_at: now,
      expire_at: new Date(now.getTime() + ATTEMPTS_RETAIN_MS),
    });
    if (expects(state, request.generation)) {
      tx.set(
        sourceRef(deps.db, request.source_id),
        {
          source_id: request.source_id,
          status: last ? "failed" : "retrying",
          error: message,
          attempts: count,
          ...(last ? { last_message_id: delivery.messageId } : {}),
        },
        { merge: true },
      );
    }
    return { attempts: count, lastChance: last };
  });
  if (!lastChance) {
    logs.embeddingRetry(delivery.messageId, request.source_id, attempts, message);
    throw error instanceof Error ? error : new Error(message);
  }
  await deadLetter(deps, delivery.messageId, request.source_id, message, attempts, transient);
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
  await recordDeadLetter(deps.db, {
    consumer: CONSUMER,
    topic: EMBEDDING_TOPIC,
    messageId,
    error,
    attempts,
    transient,
    subject: { source_id: sourceId ?? null },
  });
  logs.embeddingDeadLettered(messageId, sourceId, attempts, error);
}

/** The dead letter's reason for a request published before generations existed. */
export const NO_GENERATION = "published before generations existed (no generation): not applied";

/**
 * The request; or, for a well-formed request from before generations, its source (`withoutGeneration`); or a
 * one-line reason it is not a request.
 */
function parseRequest(data: Buffer): EmbeddingRequest | { withoutGeneration: string } | string {
  let json: unknown;
  try {
    json = JSON.parse(data.toString("utf8"));
  } catch {
    return "not JSON";
  }
  const parsed = EmbeddingRequest.safeParse(json);
  if (parsed.success) return parsed.data;
  if (json !== null && typeof json === "object" && !Array.isArray(json) && !("generation" in json)) {
    // Valid in every other respect (checked with a stand-in generation): only then is it a pre-generation request.
    const legacy = EmbeddingRequest.safeParse({ ...json, generation: 1 });
    if (legacy.success) return { withoutGeneration: legacy.data.source_id };
  }
  const issue = parsed.error.issues[0];
  return `${issue?.path.join(".") || "message"}: ${issue?.message ?? "invalid"}`;
}

/** What decides whether re-indexing is needed: the text, the model and the chunking (and the metadata stored on rows). */
export function hashContent(
  text: string,
  provider: EmbeddingProvider,
  chunking: ChunkSettings,
  metadata: Record<string, unknown>,
): string {
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
