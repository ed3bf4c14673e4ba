/**
 * The provider factory: builds the embedding provider the params name (and
 * the retry policy of its requests), at run time inside handlers and once per
 * instance. Adding a provider is a class implementing `EmbeddingProvider` and
 * a case here.
 */
import {
  EMBEDDING_API_KEY,
  EMBEDDING_BASE_URL,
  EMBEDDING_BATCH_SIZE,
  EMBEDDING_DIMS,
  EMBEDDING_MODEL,
  EMBEDDING_PROVIDER,
  EMBEDDING_PROVIDER_ATTEMPTS,
  VERTEX_LOCATION,
} from "../config";
import { OpenAiCompatibleProvider, VertexAiProvider, googleTokenSource } from "./http-providers";
import { LOCAL_MODEL_ID, LocalEmbedder } from "./local";
import type { EmbeddingProvider, RetryPolicy } from "./provider";

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
      if (model && model !== LOCAL_MODEL_ID)
        throw new Error(`EMBEDDING_MODEL ${model} is not the local embedder's (${LOCAL_MODEL_ID})`);
      break;
    case "openai":
      provider = new OpenAiCompatibleProvider(
        {
          baseUrl: baseUrl || "https://api.openai.com/v1",
          modelId: model || "text-embedding-3-small",
          dimension,
          batchSize,
        },
        EMBEDDING_API_KEY.value(),
      );
      break;
    case "vertex": {
      const location = VERTEX_LOCATION.value();
      const project = process.env.GCLOUD_PROJECT ?? process.env.GOOGLE_CLOUD_PROJECT ?? "";
      provider = new VertexAiProvider(
        {
          baseUrl: baseUrl || `https://${location}-aiplatform.googleapis.com/v1`,
          modelId: model || "text-embedding-005",
          dimension,
          batchSize,
          project,
          location,
        },
        googleTokenSource(),
      );
      break;
    }
    default:
      throw new Error(`EMBEDDING_PROVIDER must be local, openai or vertex, not ${kind}`);
  }
  return provider;
}

/** Attempts and backoff of one provider request (see `embedAll`). */
export function retryPolicy(): RetryPolicy {
  return { attempts: Math.max(1, EMBEDDING_PROVIDER_ATTEMPTS.value()), baseDelayMs: 250, maxDelayMs: 8_000 };
}
