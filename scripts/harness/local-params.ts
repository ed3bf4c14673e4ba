/**
 * Local values of the params whose deployed default is empty (the component
 * off): the harness writes them, with the services' addresses it starts, to
 * functions/.env.local, so `npm start` and the tests run with every component.
 */

/** One provider, `local`, serving every task type for free; nothing answers its probe, as before. */
export const LOCAL_MODEL_PROVIDERS = JSON.stringify([
  {
    name: "local",
    probe_url: "http://127.0.0.1:8790/local/health",
    models: [{ id: "local-small", task_types: ["*"], cost_per_1k_tokens: 0 }],
  },
]);
