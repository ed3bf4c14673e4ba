/** Names shared by the embeddings use cases (kept apart so callables import no SDK with them). */
export const EMBEDDING_TOPIC = "embedding-requests";
/** The consumer's name in `processed_events` and `dead_letters`. */
export const CONSUMER = "embeddings";
export const KNOWLEDGE_SOURCES = "knowledge_sources";
export { DEAD_LETTERS } from "../shared/dead-letters";
