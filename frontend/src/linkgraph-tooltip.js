// The link graph's hover tooltip: label, layer · token · kind, and activation / influence rank (or probability).
import { h, clear, showToken, fmt } from "./dom.js";
import { nodeLabel, layerName, influenceText } from "./graph-data.js";

export function fillTooltip(tooltip, graph, node, clerps) {
  clear(tooltip);
  let numbers = `act ${fmt(node.activation)}`;
  const infl = influenceText(graph, node);
  if (infl) numbers += ` · ${infl}`;
  if (node.synthetic) numbers = `Δp = ${fmt(node.tokenProb)} (target − contrast)`;
  else if (node.kind === "logit") numbers = `p = ${fmt(node.tokenProb)}`;
  tooltip.append(
    h("div", { class: "tt-title", text: nodeLabel(node, clerps) }),
    h("div", { class: "tt-sub", text: `${layerName(node)} · token ${node.ctx} "${showToken(node.token)}" · ${node.kind}` }),
    h("div", { class: "tt-sub", text: numbers }),
  );
  tooltip.hidden = false;
}
