/**
 * `searchKnowledge` and `selectTools`: embed the query with the model the
 * table was built with, then a filtered nearest-neighbour search.
 */
import { createHash } from "node:crypto";
import type { Connection, Table } from "@lancedb/lancedb";
import type { Firestore } from "firebase-admin/firestore";
import { Unavailable } from "../shared/errors";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { whereClause } from "./filter";
import { ProviderError } from "./errors";
import { embedAll, type EmbeddingProvider, type RetryPolicy } from "./provider";
import { DEFAULT_K, DEFAULT_TOOLS_K, type SearchInput, type SelectToolsInput } from "./schemas";
import { liveGenerations } from "./sources";
import { existingTable, nearest, openTable, replaceTools, tableName, type ToolRow, type VectorHit } from "./store";
import type { ToolSpec } from "./tools";

export interface SearchDeps {
  lance: () => Promise<Connection>;
  provider: EmbeddingProvider;
  retry: RetryPolicy;
}

export interface KnowledgeSearchDeps extends SearchDeps {
  /** The source records, which say which rows are live. */
  db: Firestore;
}

export interface KnowledgeHit {
  chunk_id: string;
  source_id: string;
  chunk_index: number;
  content: string;
  metadata: Record<string, unknown>;
  score: number;
}

export interface SearchResult {
  model: string;
  dims: number;
  results: KnowledgeHit[];
}

/** The k chunks nearest to the query among those matching the filter, best first; only rows their source record names. */
export async function searchKnowledge(deps: KnowledgeSearchDeps, input: SearchInput): Promise<SearchResult> {
  const where = whereClause(input.filter);
  const [vector, table] = await Promise.all([
    embedQuery(deps, input.query),
    deps.lance().then((db) => existingTable(db, "knowledge_text", deps.provider.modelId, deps.provider.dimension)),
  ]);
  const base = { model: deps.provider.modelId, dims: deps.provider.dimension };
  if (!table) return { ...base, results: [] };
  const hits = await liveNearest(deps.db, table, vector, input.k ?? DEFAULT_K, where);
  return {
    ...base,
    results: hits.map(({ row, score }) => ({
      chunk_id: String(row.chunk_id),
      source_id: String(row.source),
      chunk_index: Number(row.chunk_index),
      content: String(row.content),
      metadata: parseMetadata(row.metadata),
      score,
    })),
  };
}

/** How far past k a search looks at most when many nearest rows are not live (each round doubles the window). */
const MAX_WINDOW = 1000;

/**
 * The k nearest rows of live generations. Rows of a request not (or no longer) named by its source record, or of
 * a deleted source, can exist for a moment (between a write and its record commit, before a loser or a delete
 * removes them) or after a crash; they are skipped here, and the window widened until k live rows or the end.
 */
async function liveNearest(
  db: Firestore,
  table: Table,
  vector: number[],
  k: number,
  where: string | undefined,
): Promise<VectorHit[]> {
  const columns = ["chunk_id", "source", "chunk_index", "content", "metadata", "generation"];
  for (let window = k + 10; ; window = Math.min(window * 2, MAX_WINDOW)) {
    const hits = await nearest(table, vector, window, where, columns);
    const live = await liveGenerations(db, [...new Set(hits.map((hit) => String(hit.row.source)))]);
    const kept = hits.filter(({ row }) => {
      const source = live.get(String(row.source));
      return (
        source?.generation !== undefined && source.generation === Number(row.generation) && source.table === table.name
      );
    });
    if (kept.length >= k || hits.length < window || window >= MAX_WINDOW) return kept.slice(0, k);
  }
}

export interface ToolMatch {
  tool_id: string;
  function_name: string;
  description: string;
  parameters: Record<string, unknown>;
  score: number;
}

export interface SelectToolsDeps extends SearchDeps {
  tools: ToolSpec[];
  clock: Clock;
}

/** Tables this instance has already checked against the catalogue. */
const seeded = new Set<string>();

/** The k tools whose descriptions best match what the caller wants to do. */
export async function selectTools(
  deps: SelectToolsDeps,
  input: SelectToolsInput,
): Promise<{ model: string; tools: ToolMatch[] }> {
  const db = await deps.lance();
  const [vector, table] = await Promise.all([embedQuery(deps, input.query), seedTools(deps, db)]);
  const hits = await nearest(table, vector, input.k ?? DEFAULT_TOOLS_K, undefined, [
    "tool_id",
    "function_name",
    "description",
    "parameters",
  ]);
  return {
    model: deps.provider.modelId,
    tools: hits.map(({ row, score }) => ({
      tool_id: String(row.tool_id),
      function_name: String(row.function_name),
      description: String(row.description),
      parameters: parseMetadata(row.parameters),
      score,
    })),
  };
}

/** Makes the table hold exactly the catalogue, embedded with the current model; one write when it changed. */
async function seedTools(deps: SelectToolsDeps, db: Connection) {
  const { provider } = deps;
  const table = await openTable(db, "tool_selector", provider.modelId, provider.dimension);
  const seedHash = createHash("sha256").update(JSON.stringify(deps.tools)).digest("hex").slice(0, 32);
  const key = `${tableName("tool_selector", provider.modelId, provider.dimension)}:${seedHash}`;
  if (seeded.has(key)) return table;
  const present = (await table.query().select(["seed_hash"]).toArray()) as Array<{ seed_hash: string }>;
  const upToDate = present.length === deps.tools.length && present.every((row) => row.seed_hash === seedHash);
  if (!upToDate) {
    const vectors = await embedAll(
      provider,
      deps.tools.map((tool) => tool.description),
      "document",
      deps.retry,
    ).catch(unavailable);
    const now = deps.clock.now().getTime();
    const rows: ToolRow[] = deps.tools.map((tool, i) => ({
      tool_id: tool.tool_id,
      function_name: tool.function_name,
      description: tool.description,
      embedding: vectors[i],
      parameters: JSON.stringify(tool.parameters),
      seed_hash: seedHash,
      created_at: now,
    }));
    await replaceTools(table, rows);
    logs.toolsSeeded(tableName("tool_selector", provider.modelId, provider.dimension), rows.length);
  }
  seeded.add(key);
  return table;
}

async function embedQuery(deps: SearchDeps, query: string): Promise<number[]> {
  const [vector] = await embedAll(deps.provider, [query], "query", deps.retry).catch(unavailable);
  return vector;
}

/** A provider failure while answering a caller is reported as unavailable, without its internals. */
function unavailable(error: unknown): never {
  if (error instanceof ProviderError) {
    logs.unexpectedError("embedding provider", error);
    throw new Unavailable("The embedding provider", error.transient ? "try again shortly" : "it rejected the request");
  }
  throw error;
}

function parseMetadata(value: unknown): Record<string, unknown> {
  try {
    const parsed = JSON.parse(String(value)) as unknown;
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
