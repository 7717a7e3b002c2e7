// One state object with explicit subscriptions.
// store.set({key: value}) notifies each subscriber whose keys changed, once per set() call.
// Fast-changing hover state is NOT kept here (see linkgraph.js `hover` callbacks) to keep hover cheap.
import { viewDefaults } from "./view-keys.js";

function createStore(initial) {
  const state = { ...initial };
  const subs = [];
  let depth = 0;
  let pending = new Set();

  function flush() {
    const changed = pending;
    pending = new Set();
    for (const sub of subs.slice()) {
      if (sub.keys.some((k) => changed.has(k))) sub.fn(state, changed);
    }
  }

  return {
    state,
    /** Subscribe to changes of any of `keys`; returns an unsubscribe function. */
    subscribe(keys, fn) {
      const sub = { keys: Array.isArray(keys) ? keys : [keys], fn };
      subs.push(sub);
      return () => {
        const i = subs.indexOf(sub);
        if (i >= 0) subs.splice(i, 1);
      };
    },
    set(patch) {
      for (const [k, v] of Object.entries(patch)) {
        if (state[k] !== v) {
          state[k] = v;
          pending.add(k);
        }
      }
      if (depth === 0 && pending.size) {
        depth++;
        try {
          // Subscribers may call set() again; their changes flush in the same loop.
          while (pending.size) flush();
        } finally {
          depth--;
        }
      }
    },
  };
}

export const store = createStore({
  route: { view: "browse", slug: null, params: new URLSearchParams() },
  config: null, // GET /api/config
  graph: null, // processed graph (graph-data.js)
  ...viewDefaults(), // the view of the graph (view-keys.js)
  theme: document.documentElement.dataset.theme || "light",
  toast: null,
});
