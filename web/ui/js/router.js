// Hash routing: #/, #/jobs, #/jobs/new, #/jobs/<id>, #/jobs/<id>/script, #/jobs/<id>/runs,
// #/jobs/<id>/overview, #/jobs/<id>/versions, #/jobs/<id>/state, #/jobs/<id>/audit,
// #/modules, #/modules/new, #/module/<name>, #/module/<name>/versions, #/secrets, #/audit.
// Each part is URI-encoded, so a module name with a "/" is one part.
// A page is a function (root, params, query) returning an optional controller
// { dispose(), canLeave(): Promise<boolean> }.

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, qs = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(qs), path };
}

export function createRouter(root, routes, { onRoute, isBlocked } = {}) {
  let current = null;
  let currentHash = null;
  let ignoreNext = false;

  async function go() {
    if (ignoreNext) { ignoreNext = false; return; }
    if (isBlocked && isBlocked()) return;
    const hash = location.hash || "#/";
    if (current && current.canLeave && currentHash !== hash) {
      const ok = await current.canLeave();
      if (!ok) {
        ignoreNext = true;
        location.hash = currentHash;
        return;
      }
    }
    if (current && current.dispose) current.dispose();
    current = null;
    currentHash = hash;
    const { parts, query } = parseHash(hash);
    for (const route of routes) {
      const params = route.match(parts);
      if (params) {
        onRoute && onRoute(route.name);
        current = route.page(root, params, query) || null;
        return;
      }
    }
    onRoute && onRoute(null);
    root.textContent = "";
    const p = document.createElement("p");
    p.className = "panel panel-pad";
    p.textContent = "There is no such page.";
    root.appendChild(p);
  }

  window.addEventListener("hashchange", go);
  function suspend() {
    if (current && current.dispose) current.dispose();
    current = null;
    currentHash = null;
  }
  return { start: go, suspend, reload: () => { currentHash = null; if (current && current.dispose) current.dispose(); current = null; return go(); } };
}
