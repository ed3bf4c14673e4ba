/**
 * The tool catalogue `selectTools` searches: each tool's description is
 * embedded into the `tool_selector` table of the current model, seeded on
 * first use and re-seeded whenever the catalogue or the model changes.
 */
export interface ToolSpec {
  tool_id: string;
  function_name: string;
  description: string;
  /** JSON schema of the tool's arguments, returned to the caller with a match. */
  parameters: Record<string, unknown>;
}

const text = (description: string) => ({ type: "string", description });

/** The suite's own functions, described for an LLM choosing what to call. */
export const TOOLS: ToolSpec[] = [
  {
    tool_id: "search_knowledge",
    function_name: "searchKnowledge",
    description:
      "Search the knowledge base: find passages of indexed documents relevant to a question, with scores and metadata.",
    parameters: {
      type: "object",
      properties: { query: text("what to look for"), k: { type: "integer", maximum: 50 } },
      required: ["query"],
    },
  },
  {
    tool_id: "ingest_knowledge",
    function_name: "ingestKnowledge",
    description:
      "Add or update a document in the knowledge base so it becomes searchable: index text or a Cloud Storage file.",
    parameters: {
      type: "object",
      properties: { source_id: text("document id"), text: text("the document"), uri: text("gs:// URI") },
      required: ["source_id"],
    },
  },
  {
    tool_id: "delete_knowledge",
    function_name: "deleteKnowledge",
    description: "Remove a document and all its passages from the knowledge base.",
    parameters: { type: "object", properties: { source_id: text("document id") }, required: ["source_id"] },
  },
  {
    tool_id: "get_balance",
    function_name: "getBalance",
    description: "Get the user's credit balance: credits available, held for running jobs, and total.",
    parameters: { type: "object", properties: {} },
  },
  {
    tool_id: "spend_credits",
    function_name: "spendCredits",
    description: "Spend credits for a metered feature; the price comes from the server's price book.",
    parameters: {
      type: "object",
      properties: { feature: text("priced feature"), units: { type: "integer" } },
      required: ["feature"],
    },
  },
  {
    tool_id: "list_transactions",
    function_name: "listTransactions",
    description:
      "List the user's credit transactions (ledger history of grants, purchases, spending and refunds), page by page.",
    parameters: { type: "object", properties: { cursor: text("page cursor") } },
  },
  {
    tool_id: "create_podcast_job",
    function_name: "createJob",
    description:
      "Start generating a podcast episode about a topic with a given duration; credits are held until the job finishes.",
    parameters: {
      type: "object",
      properties: { topic: text("podcast topic"), duration_min: { type: "integer" } },
      required: ["topic"],
    },
  },
  {
    tool_id: "cancel_job",
    function_name: "cancelJob",
    description: "Cancel a running or queued job and release its held credits.",
    parameters: { type: "object", properties: { job_id: text("job id") }, required: ["job_id"] },
  },
  {
    tool_id: "list_notifications",
    function_name: "listNotifications",
    description:
      "List the user's notifications and alerts, such as finished jobs and low balance warnings, and mark them seen.",
    parameters: { type: "object", properties: {} },
  },
];
