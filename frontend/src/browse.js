// Browse: stored graphs, newest first; search by prompt/slug; open, export, delete (two-step); import JSON. With no
// graph yet, example prompts that trace in one click.
import { api } from "./api.js";
import { h, clear, debounce, showToken } from "./dom.js";
import { navigate } from "./router.js";

export const EXAMPLES = [
  {
    title: "Dallas → Texas → Austin",
    prompt: "Fact: the capital of the state containing Dallas is",
    about: "Two-hop recall: the model finds the state of a city, then that state's capital.",
  },
  {
    title: "The opposite of hot",
    prompt: 'The opposite of "hot" is "',
    about: "Antonyms: a concept (hot), an operation (opposite) and the word that results.",
  },
  {
    title: "A rhyming couplet",
    prompt: "He saw a carrot and had to grab it,\nHis hunger was like a starving",
    targets: [" rabbit", " habit"],
    about: "Planning a rhyme: compare the two endings that rhyme with \"grab it\".",
  },
];

/** /trace with the example filled in and run at once. */
export function exampleUrl(ex) {
  const q = new URLSearchParams({ prompt: ex.prompt });
  for (const t of ex.targets || []) q.append("target", t);
  q.set("run", "1");
  return `/trace?${q}`;
}

function examples() {
  return h("div", { class: "examples-start", id: "browse-examples" },
    h("h2", { text: "No graphs yet. Start with an example:" }),
    h("div", { class: "example-cards" }, EXAMPLES.map((ex) => h("div", { class: "panel example-card" },
      h("h3", { text: ex.title }),
      h("div", { class: "example-prompt", text: ex.prompt }),
      ex.targets ? h("div", { class: "chips" }, h("span", { class: "muted", text: "targets " }),
        ex.targets.map((t) => h("span", { class: "chip", text: showToken(t) }))) : null,
      h("p", { class: "muted small-note", text: ex.about }),
      h("button", { class: "btn primary", "data-example": ex.title, onclick: () => navigate(exampleUrl(ex)), text: "Trace this" })))),
    h("p", { class: "muted", text: "Or trace your own prompt with New trace, or import a circuit-tracer graph JSON file." }));
}

export function renderBrowse(root) {
  let q = new URLSearchParams(location.search).get("q") || "";
  let page = 1;
  const search = h("input", {
    type: "search",
    id: "browse-search",
    placeholder: "Search prompts and slugs  ( / )",
    value: q,
    "aria-label": "Search graphs",
  });
  const list = h("div", { class: "browse-list", id: "browse-list" });
  const pager = h("div", { class: "pager" });
  const status = h("div", { class: "muted", role: "status" });
  const [importBtn, fileInput] = importControls(status);

  clear(root).append(
    h("section", { class: "view browse" },
      h("div", { class: "view-head" },
        h("h1", { text: "Graphs" }),
        search,
        h("a", { class: "btn primary", href: "/trace", "data-link": "", text: "New trace" }),
        importBtn, fileInput),
      status, list, pager),
  );

  let latest = 0; // responses can arrive out of order (typing in the search box): only the newest request renders
  async function load() {
    const seq = ++latest;
    status.textContent = "Loading…";
    try {
      const data = await api.listGraphs(q, page, 20);
      if (seq !== latest) return;
      status.textContent = data.total ? `${data.total} graph${data.total === 1 ? "" : "s"}` : q ? "No graph matches the search." : "";
      clear(list);
      if (!data.total && !q) list.append(examples());
      for (const item of data.items) list.append(graphRow(item, { status, onDeleted: load }));
      clear(pager).append(...pagerButtons(page, Math.ceil(data.total / data.per_page), (step) => {
        page += step;
        load();
      }));
    } catch (e) {
      if (seq === latest) status.textContent = `The graphs could not be listed. ${e.message}`;
    }
  }

  search.addEventListener("input", debounce(() => {
    q = search.value.trim();
    page = 1;
    history.replaceState(null, "", q ? `/?q=${encodeURIComponent(q)}` : "/");
    load();
  }, 250));
  load();
  return () => {};
}

/** "Import graph JSON": the button and its hidden file input; the imported graph opens. */
function importControls(status) {
  const fileInput = h("input", { type: "file", accept: ".json,application/json", hidden: true });
  const importBtn = h("button", { class: "btn", onclick: () => fileInput.click(), text: "Import graph JSON" });
  fileInput.addEventListener("change", async () => {
    const f = fileInput.files[0];
    if (!f) return;
    status.textContent = `Importing ${f.name}…`;
    try {
      const res = await api.importGraph(f);
      navigate(`/graph/${encodeURIComponent(res.slug)}`);
    } catch (e) {
      status.textContent = `The file could not be imported. ${e.message}`;
    }
  });
  return [importBtn, fileInput];
}

/** Newer / page n of m / older, when there is more than one page; go(-1 | +1) turns the page. */
function pagerButtons(page, pages, go) {
  if (pages <= 1) return [];
  return [
    h("button", { class: "btn", disabled: page <= 1, onclick: () => go(-1), text: "← Newer" }),
    h("span", { class: "muted", text: ` page ${page} / ${pages} ` }),
    h("button", { class: "btn", disabled: page >= pages, onclick: () => go(1), text: "Older →" }),
  ];
}

/** One stored graph: open, export, and a two-step delete. */
function graphRow(item, { status, onDeleted }) {
  const del = h("button", { class: "btn danger small", "data-action": "delete", text: "Delete" });
  let armed = false;
  del.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (!armed) {
      armed = true;
      del.textContent = "Confirm delete";
      setTimeout(() => {
        armed = false;
        del.textContent = "Delete";
      }, 4000);
      return;
    }
    try {
      await api.deleteGraph(item.slug);
      onDeleted();
    } catch (e) {
      status.textContent = `The graph could not be deleted. ${e.message}`;
    }
  });
  const when = item.created_at ? new Date(item.created_at).toLocaleString() : "";
  return h("div", { class: "browse-item", "data-slug": item.slug },
    h("a", { class: "browse-prompt", href: `/graph/${encodeURIComponent(item.slug)}`, "data-link": "", title: item.prompt || item.slug, text: item.prompt || item.slug }),
    h("div", { class: "browse-meta muted" },
      h("code", { text: item.slug }), ` · ${item.model || ""} · ${item.n_nodes ?? "?"} nodes · ${item.n_links ?? "?"} links · ${item.source || ""} · ${when}`),
    h("div", { class: "browse-actions" },
      h("a", { class: "btn small", href: api.exportUrl(item.slug), download: `${item.slug}.json`, text: "Export" }),
      del),
  );
}
