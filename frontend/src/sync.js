// Cross-tab sync (as circuit-tracer's initBcSync / Neuronpedia): tabs showing the same graph share hover and the
// selected node over a BroadcastChannel named after the graph's slug. Messages: {slug, type: "hover"|"select", id}.
// Received hover is shown without being sent on; a received selection is not echoed back.
import { store } from "./state.js";

export function startGraphSync(slug, { onHover }) {
  if (typeof BroadcastChannel === "undefined") return { hover() {}, close() {} };
  const channel = new BroadcastChannel(`circuitboard:graph:${slug}`);
  let remoteClicked; // the clickedId a message just set (not to be sent back)
  const known = (id) => id === null || (store.state.graph && store.state.graph.byId.has(id));

  channel.onmessage = (ev) => {
    const m = ev.data;
    if (!m || m.slug !== slug || !store.state.graph || store.state.graph.slug !== slug) return;
    const id = typeof m.id === "string" ? m.id : null;
    if (!known(id)) return;
    if (m.type === "hover") onHover(id);
    else if (m.type === "select" && id !== store.state.clickedId) {
      remoteClicked = id;
      store.set({ clickedId: id });
    }
  };
  const un = store.subscribe(["clickedId"], (s) => {
    if (s.clickedId === remoteClicked) {
      remoteClicked = undefined;
      return;
    }
    remoteClicked = undefined;
    channel.postMessage({ slug, type: "select", id: s.clickedId });
  });
  return {
    hover(id) {
      channel.postMessage({ slug, type: "hover", id: id || null });
    },
    close() {
      un();
      channel.close();
    },
  };
}
