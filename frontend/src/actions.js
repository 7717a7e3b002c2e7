// View-state mutations shared by the panels and the keyboard shortcuts.
import { store } from "./state.js";

const SUPERNODE = "supernode-";
/** A supernode's subgraph item id: its index in the supernode list. */
export const supernodeId = (k) => `${SUPERNODE}${k}`;

export function togglePin(id) {
  if (!id) return;
  const s = store.state;
  if (s.pinnedIds.includes(id)) {
    // Unpinning also removes the node from its supernode (as Neuronpedia does).
    const supernodes = s.supernodes
      .map((sn) => [sn[0], ...sn.slice(1).filter((m) => m !== id)])
      .filter((sn) => sn.length > 1);
    const pinnedIds = s.pinnedIds.filter((p) => p !== id);
    store.set({
      pinnedIds,
      supernodes,
      sgPos: carryPositions(s.supernodes, supernodes, pinnedIds),
      groupSelection: s.groupSelection.filter((p) => p !== id),
    });
  } else {
    store.set({ pinnedIds: [...s.pinnedIds, id] });
  }
}

export function setClicked(id) {
  store.set({ clickedId: id || null });
}

export function toggleSelect(id) {
  const sel = store.state.groupSelection;
  store.set({ groupSelection: sel.includes(id) ? sel.filter((x) => x !== id) : [...sel, id] });
}

/** Group the selected pinned nodes (or supernodes, which are merged) into one labelled supernode. */
export function groupSelection(label) {
  const s = store.state;
  const members = new Set();
  const keep = [];
  const sel = new Set(s.groupSelection);
  s.supernodes.forEach((sn, k) => {
    if (sel.has(supernodeId(k)) || sn.slice(1).some((m) => sel.has(m))) sn.slice(1).forEach((m) => members.add(m));
    else keep.push(sn);
  });
  for (const id of sel) if (!id.startsWith(SUPERNODE)) members.add(id);
  if (members.size < 2) return false;
  const pinned = [...s.pinnedIds];
  for (const m of members) if (!pinned.includes(m)) pinned.push(m);
  const supernodes = [...keep, [label || `group ${keep.length + 1}`, ...members]];
  store.set({ supernodes, pinnedIds: pinned, sgPos: carryPositions(s.supernodes, supernodes, pinned), groupSelection: [] });
  return true;
}

export function ungroup(k) {
  const s = store.state;
  const supernodes = s.supernodes.filter((_, i) => i !== k);
  store.set({ supernodes, sgPos: carryPositions(s.supernodes, supernodes, s.pinnedIds) });
}

export function renameSupernode(k, label) {
  store.set({ supernodes: store.state.supernodes.map((sn, i) => (i === k ? [label, ...sn.slice(1)] : sn)) });
}

export function setClerp(id, label) {
  const clerps = { ...store.state.clerps };
  if (label) clerps[id] = label;
  else delete clerps[id];
  store.set({ clerps });
}

export function clearPinned() {
  store.set({ pinnedIds: [], supernodes: [], groupSelection: [], sgPos: {} });
}

/**
 * Subgraph positions after the supernode list changed: a supernode's id is its index (`supernode-{k}`), so its
 * position follows the supernode with the same members (else the same label); pinned nodes keep theirs unless
 * they are now inside a supernode; positions of anything gone are dropped.
 */
function carryPositions(oldSn, newSn, pinnedIds) {
  const pos = store.state.sgPos;
  const out = {};
  const key = (sn) => [...sn.slice(1)].sort().join(",");
  const byKey = new Map(oldSn.map((sn, k) => [key(sn), k]));
  const byLabel = new Map(oldSn.map((sn, k) => [sn[0], k]));
  const grouped = new Set();
  newSn.forEach((sn, k) => {
    sn.slice(1).forEach((m) => grouped.add(m));
    const old = byKey.get(key(sn)) ?? byLabel.get(sn[0]);
    const p = old !== undefined && pos[supernodeId(old)];
    if (p) out[supernodeId(k)] = p;
  });
  for (const id of pinnedIds) if (pos[id] && !grouped.has(id)) out[id] = pos[id];
  return out;
}

/** Keys held down (G = grouping mode while held, as in the reference viewers). */
export const held = { g: false };

/** Add suggested groups as ordinary supernodes (their members pinned, and taken out of any group they were in). */
export function acceptSupernodes(groups) {
  const s = store.state;
  const taken = new Set(groups.flatMap((g) => g.slice(1)));
  const kept = s.supernodes
    .map((sn) => [sn[0], ...sn.slice(1).filter((m) => !taken.has(m))])
    .filter((sn) => sn.length > 1);
  const supernodes = [...kept, ...groups.filter((g) => g.length > 1)];
  const pinned = [...s.pinnedIds];
  for (const m of taken) if (!pinned.includes(m)) pinned.push(m);
  store.set({ supernodes, pinnedIds: pinned, sgPos: carryPositions(s.supernodes, supernodes, pinned), groupSelection: [] });
}
