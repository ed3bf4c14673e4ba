/**
 * The one owner of "which request does a knowledge source expect, and which
 * rows are live": the `knowledge_sources/{source_id}` record.
 *
 * Every ingest and every delete takes the next **generation** of the source in
 * a Firestore transaction on its record (a per-source counter, so ordering
 * does not depend on clocks). Rows in LanceDB carry the generation of the
 * request that wrote them. The record names:
 * - `generation`: the last generation handed out (by ingest or delete);
 * - `applied_generation`: the newest ingest request applied (indexed, or found unchanged);
 * - `live_generation`: the generation whose rows are the source's content (absent once deleted);
 * - `deleted_generation`: the generation of the last delete.
 *
 * A request of generation g is still expected when no newer request was applied
 * and no delete came after it. The consumer checks that inside the transaction
 * that records its outcome; searches return only rows of the live generation;
 * and whoever moves the record on removes the rows it no longer names (see
 * consume.ts and ingest.ts), so LanceDB ends equal to the record.
 */
import {
  FieldValue,
  type DocumentReference,
  type DocumentSnapshot,
  type Firestore,
  type Transaction,
} from "firebase-admin/firestore";
import { NotFound } from "../shared/errors";
import { KNOWLEDGE_SOURCES } from "./constants";

export interface SourceState {
  exists: boolean;
  status?: string;
  table?: string;
  content_hash?: string | null;
  generation: number;
  applied_generation: number;
  deleted_generation: number;
  /** Undefined: nothing of the source is searchable. */
  live_generation?: number;
}

export function sourceRef(db: Firestore, sourceId: string): DocumentReference {
  return db.collection(KNOWLEDGE_SOURCES).doc(sourceId);
}

const count = (value: unknown): number => (typeof value === "number" && Number.isFinite(value) ? value : 0);

/** The record as the generation rules read it. */
export function sourceState(snapshot: DocumentSnapshot): SourceState {
  const data = snapshot.data() ?? {};
  const status = typeof data.status === "string" ? data.status : undefined;
  const table = typeof data.table === "string" ? data.table : undefined;
  // Records indexed before generations existed have none of the counters but name a table; their rows carry
  // generation 0 (see store.ts), so they stay searchable until the source is next ingested or deleted.
  const legacy =
    data.generation === undefined && data.live_generation === undefined && table !== undefined && status !== "deleted";
  const legacyLive = legacy ? 0 : undefined;
  return {
    exists: snapshot.exists,
    status,
    table,
    content_hash: typeof data.content_hash === "string" ? data.content_hash : null,
    generation: count(data.generation),
    applied_generation: count(data.applied_generation),
    deleted_generation: count(data.deleted_generation),
    live_generation: typeof data.live_generation === "number" ? data.live_generation : legacyLive,
  };
}

/**
 * Whether a request of `generation` may still change the source: no newer request was applied (an equal one is
 * a republished copy of the same request) and no delete was requested after it.
 */
export function expects(state: SourceState, generation: number): boolean {
  return generation >= state.applied_generation && generation > state.deleted_generation;
}

/** Takes the next generation for an ingest request; a new source's record starts as `pending`. */
export async function stampIngest(db: Firestore, sourceId: string): Promise<number> {
  const ref = sourceRef(db, sourceId);
  return db.runTransaction(async (tx) => {
    const state = sourceState(await tx.get(ref));
    const generation = state.generation + 1;
    const update: Record<string, unknown> = { source_id: sourceId, generation };
    if (!state.exists || state.status === undefined || state.status === "deleted") update.status = "pending";
    // A record from before generations: name its rows (generation 0) live explicitly, now that it gets a counter.
    if (state.generation === 0 && state.live_generation === 0) update.live_generation = 0;
    tx.set(ref, update, { merge: true });
    return generation;
  });
}

export interface DeleteStamp {
  generation: number;
  /** The table the source's live rows were in, if any. */
  table?: string;
}

/**
 * Marks the source deleted under the next generation: from this commit on no search returns its rows and no
 * request taken before it can bring it back. Throws NotFound for a source that was never ingested.
 */
export async function stampDelete(
  db: Firestore,
  sourceId: string,
  deletedBy: string,
  deletedAt: number,
): Promise<DeleteStamp> {
  const ref = sourceRef(db, sourceId);
  return db.runTransaction(async (tx) => {
    const state = sourceState(await tx.get(ref));
    if (!state.exists) throw new NotFound(`Knowledge source ${sourceId}`);
    const generation = state.generation + 1;
    tx.set(
      ref,
      {
        status: "deleted",
        generation,
        deleted_generation: generation,
        live_generation: FieldValue.delete(),
        deleted_at: deletedAt,
        deleted_by: deletedBy,
        chunk_count: 0,
        content_hash: null,
        error: null,
      },
      { merge: true },
    );
    return { generation, table: state.table };
  });
}

/** Reads the record inside `tx`; the caller writes only if `expects` holds for its request. */
export async function readInTransaction(tx: Transaction, db: Firestore, sourceId: string): Promise<SourceState> {
  return sourceState(await tx.get(sourceRef(db, sourceId)));
}

/** The live generation of each source (undefined: not searchable), in one batched read. */
export async function liveGenerations(
  db: Firestore,
  sourceIds: string[],
): Promise<Map<string, { generation?: number; table?: string }>> {
  const live = new Map<string, { generation?: number; table?: string }>();
  if (sourceIds.length === 0) return live;
  const snapshots = await db.getAll(...sourceIds.map((id) => sourceRef(db, id)));
  snapshots.forEach((snapshot, i) => {
    const state = sourceState(snapshot);
    live.set(sourceIds[i], { generation: state.live_generation, table: state.table });
  });
  return live;
}
