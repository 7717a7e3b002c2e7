// An input for exact token strings (trace targets, watched tokens): typed text is kept as it is, leading spaces
// included (" rabbit" and "rabbit" are different tokens), and shown as chips with the whitespace made visible.
// Enter or "Add" adds what is typed; × removes a chip. onChange(list) after every change.
import { h, clear, showToken } from "./dom.js";

export function createTokenChips({ id, label, placeholder, max = 20, onChange = () => {} }) {
  let list = [];
  const chips = h("span", { class: "chips token-chips", id });
  const input = h("input", { id: `${id}-input`, class: "token-input", placeholder, "aria-label": label });
  const add = h("button", { class: "btn small", type: "button", id: `${id}-add`, text: "Add" });
  const note = h("span", { class: "muted small-note", id: `${id}-note` });

  const draw = () => {
    clear(chips);
    list.forEach((t, k) => {
      const x = h("button", { class: "chip-x", type: "button", "aria-label": `remove ${showToken(t)}`, text: "×" });
      x.addEventListener("click", () => set(list.filter((_, i) => i !== k)));
      chips.append(h("span", { class: "chip token-chip", "data-token": t, title: JSON.stringify(t) },
        h("span", { text: showToken(t) }), x));
    });
    input.disabled = list.length >= max;
    add.disabled = list.length >= max;
    note.textContent = list.length >= max ? `at most ${max}` : "";
  };
  const set = (next) => {
    list = [...next];
    draw();
    onChange(list);
  };
  /** Add a token string (ignored when empty or already there). */
  const push = (t) => {
    if (t === "" || list.includes(t) || list.length >= max) return false;
    set([...list, t]);
    return true;
  };
  const commit = () => {
    // Only an empty box is ignored: " " (a space token) is a real token; the text is not trimmed.
    if (push(input.value)) input.value = "";
  };
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    commit();
  });
  add.addEventListener("click", commit);
  const el = h("span", { class: "token-chips-box" }, chips, input, add, note);
  return { el, input, values: () => [...list], set, push, commit };
}
