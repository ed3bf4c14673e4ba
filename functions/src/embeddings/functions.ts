/**
 * The embeddings capability's functions. Each only declares itself and hands
 * over to a use case, loaded on first call: the callables that do not search
 * never load LanceDB, and ingestKnowledge does not load LanceDB.
 */
import { onMessagePublished } from "firebase-functions/v2/pubsub";
import { EMBEDDING_API_KEY, EMBEDDING_MAX_DELIVERIES, KNOWLEDGE_OWNER_UIDS, VECTOR_INDEX_THRESHOLD } from "../config";
import { callable } from "../shared/callable";
import { systemClock } from "../shared/time";
import { EMBEDDING_TOPIC } from "./constants";
import { DeleteInput, IngestInput, SearchInput, SelectToolsInput } from "./schemas";

const SEARCH_OPTIONS = { secrets: [EMBEDDING_API_KEY], memory: "1GiB" as const, timeoutSeconds: 60 };

export const ingestKnowledge = callable({
  name: "ingestKnowledge",
  access: "user",
  schema: IngestInput,
  handler: async (input: IngestInput, caller) => {
    const [{ ingestKnowledge: ingest, ownerList }, { pubsub }, { firestore }] = await Promise.all([
      import("./ingest"),
      import("../adapters/pubsub"),
      import("../adapters/firebase"),
    ]);
    return ingest(
      {
        db: firestore(),
        publish: (topic, message) => pubsub().topic(topic).publishMessage({ json: message }),
        owners: ownerList(KNOWLEDGE_OWNER_UIDS.value()),
        clock: systemClock,
      },
      input,
      caller,
    );
  },
});

export const deleteKnowledge = callable({
  name: "deleteKnowledge",
  access: "user",
  schema: DeleteInput,
  options: { memory: "1GiB", timeoutSeconds: 60 },
  handler: async (input, caller) => {
    const { deleteKnowledge: remove, ownerList } = await import("./ingest");
    const [{ firestore }, { lanceDb }] = await Promise.all([
      import("../adapters/firebase"),
      import("../adapters/lance"),
    ]);
    return remove(
      { db: firestore(), lance: lanceDb, owners: ownerList(KNOWLEDGE_OWNER_UIDS.value()), clock: systemClock },
      input,
      caller,
    );
  },
});

export const searchKnowledge = callable({
  name: "searchKnowledge",
  access: "user",
  schema: SearchInput,
  options: SEARCH_OPTIONS,
  handler: async (input: SearchInput) => {
    const [{ searchKnowledge: search }, factory, { lanceDb }, { firestore }] = await Promise.all([
      import("./search"),
      import("./provider-factory"),
      import("../adapters/lance"),
      import("../adapters/firebase"),
    ]);
    return search(
      { db: firestore(), lance: lanceDb, provider: factory.configuredProvider(), retry: factory.retryPolicy() },
      input,
    );
  },
});

export const selectTools = callable({
  name: "selectTools",
  access: "user",
  schema: SelectToolsInput,
  options: SEARCH_OPTIONS,
  handler: async (input: SelectToolsInput) => {
    const [{ selectTools: select }, factory, { lanceDb }, { TOOLS }] = await Promise.all([
      import("./search"),
      import("./provider-factory"),
      import("../adapters/lance"),
      import("./tools"),
    ]);
    return select(
      {
        lance: lanceDb,
        provider: factory.configuredProvider(),
        retry: factory.retryPolicy(),
        tools: TOOLS,
        clock: systemClock,
      },
      input,
    );
  },
});

/** Retries on: a throw asks Pub/Sub for a redelivery with backoff (see consume.ts for when it throws). */
export const embeddingConsumer = onMessagePublished(
  { topic: EMBEDDING_TOPIC, retry: true, secrets: [EMBEDDING_API_KEY], memory: "1GiB", timeoutSeconds: 540 },
  async (event) => {
    const [{ consumeEmbeddingRequest }, factory, { chunkSettings }, { readStorageText }, { firestore }, { lanceDb }] =
      await Promise.all([
        import("./consume"),
        import("./provider-factory"),
        import("./chunking"),
        import("./read-object"),
        import("../adapters/firebase"),
        import("../adapters/lance"),
      ]);
    const message = event.data.message;
    await consumeEmbeddingRequest(
      {
        db: firestore(),
        lance: lanceDb,
        provider: factory.configuredProvider(),
        chunking: chunkSettings(),
        readObject: readStorageText,
        retry: factory.retryPolicy(),
        maxDeliveries: EMBEDDING_MAX_DELIVERIES.value(),
        // The local emulator acks a message whatever the function does (firebase-tools' PubsubEmulator).
        platformRedelivers: process.env.FUNCTIONS_EMULATOR !== "true",
        indexThreshold: VECTOR_INDEX_THRESHOLD.value(),
        clock: systemClock,
      },
      {
        messageId: message.messageId,
        data: Buffer.from(message.data ?? "", "base64"),
        publishTime: message.publishTime ? new Date(message.publishTime) : undefined,
      },
    );
  },
);
