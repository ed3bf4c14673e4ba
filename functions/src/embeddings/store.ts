/**
 * The LanceDB side of the capability: table naming, schemas, the one write per
 * message, deletes, searches and vector-index upkeep.
 *
 * Vectors of different models or dimensions never share a table: each
 * (model, dimension) pair has its own `knowledge_text__…` and `tool_selector__…`
 * table, so switching models re-embeds sources into a new table on their next
 * ingest instead of mixing spaces.
 */
import type { Connection, Table } from "@lancedb/lancedb";
import type { Schema, Table as ArrowTable } from "apache-arrow";
import { sourceClause } from "./filter";

export type TableKind = "knowledge_text" | "tool_selector";

/** `knowledge_text__local_hash_v1__384`: the kind, then the model and dimension it holds. */
export function tableName(kind: TableKind, modelId: string, dimension: number): string {
  const slug =
    modelId
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "_")
      .replace(/^_+|_+$/g, "") || "model";
  return `${kind}__${slug}__${dimension}`;
}

/** One chunk as stored (the seed's knowledge_text shape, plus what ingest needs). */
export interface ChunkRow {
  /** `{source}@{generation}#{index}`: each request's rows are its own, so a request that loses a race removes only its rows. */
  chunk_id: string;
  source: string;
  chunk_index: number;
  content: string;
  embedding: number[];
  /** The source's metadata as JSON. */
  metadata: string;
  /** Opaque digests of metadata pairs, for filters (see filter.ts). */
  metadata_tags: string[];
  content_hash: string;
  /** When the ingest was requested (ms): from the message, so a redelivery writes byte-identical rows. */
  requested_at: number;
  /** The generation of the request that wrote the row (see sources.ts); searches return only the live one. */
  generation: number;
}

/** The id of a chunk row: one per source, request generation and position. */
export function chunkId(sourceId: string, generation: number, index: number): string {
  return `${sourceId}@${generation}#${index}`;
}

export interface ToolRow {
  tool_id: string;
  function_name: string;
  description: string;
  embedding: number[];
  /** JSON of the tool's parameters schema, returned with a match. */
  parameters: string;
  seed_hash: string;
  created_at: number;
}

function schemaFor(kind: TableKind, dimension: number): Schema {
  const arrow = require("apache-arrow") as typeof import("apache-arrow");
  const { Field, Utf8, Int32, Float64, Float32, FixedSizeList, List } = arrow;
  const vector = new Field("embedding", new FixedSizeList(dimension, new Field("item", new Float32(), true)), false);
  if (kind === "tool_selector") {
    return new arrow.Schema([
      new Field("tool_id", new Utf8(), false),
      new Field("function_name", new Utf8(), false),
      new Field("description", new Utf8(), false),
      vector,
      new Field("parameters", new Utf8(), false),
      new Field("seed_hash", new Utf8(), false),
      new Field("created_at", new Float64(), false),
    ]);
  }
  return new arrow.Schema([
    new Field("chunk_id", new Utf8(), false),
    new Field("source", new Utf8(), false),
    new Field("chunk_index", new Int32(), false),
    new Field("content", new Utf8(), false),
    vector,
    new Field("metadata", new Utf8(), false),
    new Field("metadata_tags", new List(new Field("item", new Utf8(), true)), false),
    new Field("content_hash", new Utf8(), false),
    new Field("requested_at", new Float64(), false),
    new Field("generation", new Float64(), false),
  ]);
}

/**
 * Tables written before rows carried a generation get the column, as generation 0: what sources.ts reads as the
 * live generation of a record from that time, so their rows stay searchable until the source changes.
 */
async function withGenerationColumn(table: Table): Promise<Table> {
  const schema = await table.schema();
  if (
    schema.fields.some((field) => field.name === "chunk_id") &&
    !schema.fields.some((field) => field.name === "generation")
  ) {
    await table.addColumns([{ name: "generation", valueSql: "CAST(0 AS DOUBLE)" }]);
  }
  return table;
}

/**
 * Open tables per connection. A handle stays valid as the table grows: the
 * connection's read-consistency interval makes reads see other instances'
 * commits, so re-opening (a manifest read) on every call would be wasted.
 */
const handles = new WeakMap<Connection, Map<string, Table>>();

function cached(db: Connection): Map<string, Table> {
  let map = handles.get(db);
  if (!map) handles.set(db, (map = new Map<string, Table>()));
  return map;
}

/** Opens a table, creating it empty on first use (concurrent creators are fine: exist-ok). */
export async function openTable(db: Connection, kind: TableKind, modelId: string, dimension: number): Promise<Table> {
  const name = tableName(kind, modelId, dimension);
  const known = cached(db).get(name);
  if (known) return known;
  let table: Table;
  try {
    table = await withGenerationColumn(await db.openTable(name));
  } catch {
    table = await db.createEmptyTable(name, schemaFor(kind, dimension), { mode: "create", existOk: true });
  }
  cached(db).set(name, table);
  return table;
}

/** A table by name if it exists (e.g. the one a source record names), with the generation column. */
export async function existingTableNamed(db: Connection, name: string): Promise<Table | undefined> {
  const known = cached(db).get(name);
  if (known) return known;
  if (!(await db.tableNames()).includes(name)) return undefined;
  const table = await withGenerationColumn(await db.openTable(name));
  cached(db).set(name, table);
  return table;
}

/** The table if it exists; searches of a model nothing was indexed with find nothing. */
export async function existingTable(
  db: Connection,
  kind: TableKind,
  modelId: string,
  dimension: number,
): Promise<Table | undefined> {
  return existingTableNamed(db, tableName(kind, modelId, dimension));
}

/**
 * Writes one request's chunks in a single LanceDB commit (one new table
 * version): rows are upserted by `chunk_id`, so a redelivery of the request
 * rewrites identical rows; rows of the same generation beyond the new last
 * index (left by a delivery chunked differently) are deleted in the same
 * operation. That delete makes LanceDB join against the whole table, so it is
 * only asked for when such rows exist (a filtered count, no write). Rows of
 * other generations are not touched: they are the record's to keep or remove.
 */
export async function writeGeneration(
  table: Table,
  sourceId: string,
  generation: number,
  rows: ChunkRow[],
): Promise<number | undefined> {
  const ofGeneration = `${sourceClause(sourceId)} AND generation = ${generation}`;
  const stale = await table.countRows(`${ofGeneration} AND chunk_index >= ${rows.length}`);
  if (rows.length === 0) return stale > 0 ? (await table.delete(ofGeneration)).version : undefined;
  let builder = table.mergeInsert("chunk_id").whenMatchedUpdateAll().whenNotMatchedInsertAll();
  if (stale > 0) builder = builder.whenNotMatchedBySourceDelete({ where: ofGeneration });
  const result = await builder.execute(chunkBatch(rows, rows[0].embedding.length));
  return result.version;
}

/** Which of a source's rows to remove: one generation (a request's own), or all before one (what a record moved past). */
export type GenerationSelector = { only: number } | { before: number };

/**
 * Removes a source's rows of the selected generations; returns how many there
 * were. Nothing is written when there are none (a filtered count first).
 */
export async function removeGenerations(table: Table, sourceId: string, selector: GenerationSelector): Promise<number> {
  const generations = "only" in selector ? `generation = ${selector.only}` : `generation < ${selector.before}`;
  const where = `${sourceClause(sourceId)} AND ${generations}`;
  const rows = await table.countRows(where);
  if (rows > 0) await table.delete(where);
  return rows;
}

/**
 * Chunk rows as one Arrow table. Building the columns directly (vectors as one
 * flat Float32Array) is several times faster than letting LanceDB infer them
 * from plain objects, which matters at thousands of chunks per message.
 */
export function chunkBatch(rows: ChunkRow[], dimension: number): ArrowTable {
  const arrow = require("apache-arrow") as typeof import("apache-arrow");
  const schema = schemaFor("knowledge_text", dimension);
  const flat = new Float32Array(rows.length * dimension);
  rows.forEach((row, i) => flat.set(row.embedding, i * dimension));
  type Arrow = typeof import("apache-arrow");
  type Data = import("apache-arrow").Data;
  const typeOf = (name: string): unknown => schema.fields.find((field) => field.name === name)!.type;
  const vectorType = typeOf("embedding") as InstanceType<Arrow["FixedSizeList"]>;
  const tagsType = typeOf("metadata_tags") as InstanceType<Arrow["List"]>;
  const strings = (pick: (row: ChunkRow) => string): Data =>
    arrow.vectorFromArray(rows.map(pick), new arrow.Utf8()).data[0] as Data;
  const columns: Record<string, Data> = {
    chunk_id: strings((row) => row.chunk_id),
    source: strings((row) => row.source),
    chunk_index: arrow.makeData({
      type: new arrow.Int32(),
      length: rows.length,
      data: Int32Array.from(rows, (row) => row.chunk_index),
    }),
    content: strings((row) => row.content),
    embedding: arrow.makeData({
      type: vectorType,
      length: rows.length,
      nullCount: 0,
      child: arrow.makeData({ type: new arrow.Float32(), length: flat.length, data: flat }),
    }),
    metadata: strings((row) => row.metadata),
    metadata_tags: arrow.vectorFromArray(
      rows.map((row) => row.metadata_tags),
      tagsType,
    ).data[0] as Data,
    content_hash: strings((row) => row.content_hash),
    requested_at: arrow.makeData({
      type: new arrow.Float64(),
      length: rows.length,
      data: Float64Array.from(rows, (row) => row.requested_at),
    }),
    generation: arrow.makeData({
      type: new arrow.Float64(),
      length: rows.length,
      data: Float64Array.from(rows, (row) => row.generation),
    }),
  };
  const struct = arrow.makeData({
    type: new arrow.Struct(schema.fields),
    length: rows.length,
    nullCount: 0,
    children: schema.fields.map((field) => columns[field.name]),
  });
  return new arrow.Table(schema, [new arrow.RecordBatch(schema, struct)]);
}

/** Upserts the tool catalogue and drops tools no longer in it, in one commit. */
export async function replaceTools(table: Table, rows: ToolRow[]): Promise<void> {
  await table
    .mergeInsert("tool_id")
    .whenMatchedUpdateAll()
    .whenNotMatchedInsertAll()
    .whenNotMatchedBySourceDelete()
    .execute(rows.map((row) => ({ ...row })));
}

export interface VectorHit {
  row: Record<string, unknown>;
  score: number;
}

/**
 * Nearest rows by cosine distance (score = 1 − distance), filtered before ranking.
 * `_distance` is selected by name: LanceDB will stop adding it to searches that
 * name their columns, and until then warns on every search that relies on it.
 */
export async function nearest(
  table: Table,
  vector: number[],
  k: number,
  where: string | undefined,
  columns: string[],
): Promise<VectorHit[]> {
  let query = table
    .vectorSearch(vector)
    .distanceType("cosine")
    .select([...columns, "_distance"])
    .limit(k);
  if (where) query = query.where(where);
  const rows = (await query.toArray()) as Array<Record<string, unknown>>;
  return rows.map((row) => {
    const distance = Number(row._distance);
    const { _distance: _ignored, ...rest } = row;
    void _ignored;
    return { row: rest, score: Math.round((1 - distance) * 1e6) / 1e6 };
  });
}

export type IndexAction = "none" | "created" | "optimized";

/**
 * Keeps search fast as a table grows: flat (exact) search below `threshold`
 * rows; past it an IVF_PQ index on the vectors; once the rows added since the
 * index reach a tenth of the threshold, `optimize()` folds them in.
 */
export async function maintainVectorIndex(table: Table, threshold: number, dimension: number): Promise<IndexAction> {
  const indices = await table.listIndices();
  const vectorIndex = indices.find((index) => index.columns.includes("embedding"));
  if (!vectorIndex) {
    if ((await table.countRows()) < threshold) return "none";
    const { Index } = require("@lancedb/lancedb") as typeof import("@lancedb/lancedb");
    const rows = await table.countRows();
    await table.createIndex("embedding", {
      config: Index.ivfPq({
        distanceType: "cosine",
        numPartitions: Math.max(1, Math.round(Math.sqrt(rows))),
        numSubVectors: subVectors(dimension),
      }),
    });
    return "created";
  }
  const stats = await table.indexStats(vectorIndex.name);
  if (stats && stats.numUnindexedRows >= Math.max(1, Math.floor(threshold / 10))) {
    await table.optimize();
    return "optimized";
  }
  return "none";
}

/** The largest divisor of `dimension` giving sub-vectors of at least 8 dimensions, capped at 96. */
function subVectors(dimension: number): number {
  for (let count = Math.min(96, Math.floor(dimension / 8)); count > 1; count--) {
    if (dimension % count === 0) return count;
  }
  return 1;
}
