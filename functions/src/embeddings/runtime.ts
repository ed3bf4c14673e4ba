/**
 * The capability's dependencies as configured by params, built at run time
 * (inside handlers) and once per instance.
 */
import { adminApp } from "../adapters/firebase";
import {
  EMBEDDING_API_KEY,
  EMBEDDING_BASE_URL,
  EMBEDDING_BATCH_SIZE,
  EMBEDDING_CHUNK_OVERLAP,
  EMBEDDING_CHUNK_SIZE,
  EMBEDDING_DIMS,
  EMBEDDING_MODEL,
  EMBEDDING_PROVIDER,
  EMBEDDING_PROVIDER_ATTEMPTS,
  VERTEX_LOCATION,
} from "../config";
import type { ChunkSettings } from "./chunking";
import { PermanentFailure } from "./consume";
import { OpenAiCompatibleProvider, VertexAiProvider, googleTokenSource } from "./http-providers";
import { LOCAL_MODEL_ID, LocalEmbedder } from "./local";
import type { EmbeddingProvider, RetryPolicy } from "./provider";
import { MAX_STORED_TEXT } from "./schemas";

let provider: EmbeddingProvider | undefined;

/** The configured provider: local (default), openai (any compatible endpoint) or vertex. */
export function configuredProvider(): EmbeddingProvider {
  if (provider) return provider;
  const kind = EMBEDDING_PROVIDER.value();
  const dimension = EMBEDDING_DIMS.value();
  const batchSize = EMBEDDING_BATCH_SIZE.value();
  const model = EMBEDDING_MODEL.value();
  const baseUrl = EMBEDDING_BASE_URL.value();
  switch (kind) {
    case "local":
      provider = new LocalEmbedder(dimension, Math.max(batchSize, 1));
      if (model && model !== LOCAL_MODEL_ID) throw new Error(`EMBEDDING_MODEL ${model} is not the local embedder's (${LOCAL_MODEL_ID})`);
      break;
    case "openai":
      provider = new OpenAiCompatibleProvider(
        { baseUrl: baseUrl || "https://api.openai.com/v1", modelId: model || "text-embedding-3-small", dimension, batchSize },
        EMBEDDING_API_KEY.value(),
      );
      break;
    case "vertex": {
      const location = VERTEX_LOCATION.value();
      const project = process.env.GCLOUD_PROJECT ?? process.env.GOOGLE_CLOUD_PROJECT ?? "";
      provider = new VertexAiProvider(
        { baseUrl: baseUrl || `https://${location}-aiplatform.googleapis.com/v1`, modelId: model || "text-embedding-005", dimension, batchSize, project, location },
        googleTokenSource(),
      );
      break;
    }
    default:
      throw new Error(`EMBEDDING_PROVIDER must be local, openai or vertex, not ${kind}`);
  }
  return provider;
}

export function retryPolicy(): RetryPolicy {
  return { attempts: Math.max(1, EMBEDDING_PROVIDER_ATTEMPTS.value()), baseDelayMs: 250, maxDelayMs: 8_000 };
}

export function chunkSettings(): ChunkSettings {
  return { size: EMBEDDING_CHUNK_SIZE.value(), overlap: EMBEDDING_CHUNK_OVERLAP.value() };
}

/** Reads `gs://bucket/path` through firebase-admin/storage (loaded on first use). A missing object is permanent. */
export async function readStorageText(uri: string): Promise<string> {
  const match = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!match) throw new PermanentFailure(`not a gs:// URI: ${uri.slice(0, 100)}`);
  const { getStorage } = require("firebase-admin/storage") as typeof import("firebase-admin/storage");
  const file = getStorage(adminApp()).bucket(match[1]).file(match[2]);
  try {
    const [metadata] = await file.getMetadata();
    if (Number(metadata.size ?? 0) > MAX_STORED_TEXT) throw new PermanentFailure(`object is larger than ${MAX_STORED_TEXT} bytes`);
    const [contents] = await file.download();
    return contents.toString("utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 404 || code === 403) throw new PermanentFailure(`cannot read ${uri}: HTTP ${code}`);
    throw error;
  }
}
