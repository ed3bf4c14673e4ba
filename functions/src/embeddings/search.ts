/**
 * `searchKnowledge` and `selectTools`: embed the query with the model the
 * table was built with, then a filtered nearest-neighbour search.
 */
import { createHash } from "node:crypto";
import type { Connection } from "@lancedb/lancedb";
import { Unavailable } from "../shared/errors";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { whereClause } from "./filter";
import { ProviderError, embedAll, type EmbeddingProvider, type RetryPolicy } from "./provider";
import { DEFAULT_K, DEFAULT_TOOLS_K, type SearchInput, type SelectToolsInput } from "./schemas";
import { existingTable, nearest, openTable, replaceTools, tableName, type ToolRow } from "./store";
import type { ToolSpec } from "./tools";

export interface SearchDeps {
  lance: () => Promise<Connection>;
  provider: EmbeddingProvider;
  retry: RetryPolicy;
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

/** The k chunks nearest to the query among those matching the filter, best first. */
export async function searchKnowledge(deps: SearchDeps, input: SearchInput): Promise<SearchResult> {
  const where = whereClause(input.filter);
  const [vector, table] = await Promise.all([
    embedQuery(deps, input.query),
    deps.lance().then((db) => existingTable(db, "knowledge_text", deps.provider.modelId, deps.provider.dimension)),
  ]);
  const base = { model: deps.provider.modelId, dims: deps.provider.dimension };
  if (!table) return { ...base, results: [] };
  const hits = await nearest(table, vector, input.k ?? DEFAULT_K, where, ["chunk_id", "source", "chunk_index", "content", "metadata"]);
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
export async function selectTools(deps: SelectToolsDeps, input: SelectToolsInput): Promise<{ model: string; tools: ToolMatch[] }> {
  const db = await deps.lance();
  const [vector, table] = await Promise.all([embedQuery(deps, input.query), seedTools(deps, db)]);
  const hits = await nearest(table, vector, input.k ?? DEFAULT_TOOLS_K, undefined, ["tool_id", "function_name", "description", "parameters"]);
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
    const vectors = await embedAll(provider, deps.tools.map((tool) => tool.description), "document", deps.retry).catch(unavailable);
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
