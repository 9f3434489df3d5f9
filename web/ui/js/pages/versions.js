// A job's script versions (GET /api/job/versions): view one (GET /api/job/version), diff
// any two, and roll back (POST /api/job/rollback), which saves a new version. The list,
// the diff and the rollback are ../versions-view.js, shared with the modules' versions.
import { fill, el } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, pageError } from "../ui.js";
import { versionsView } from "../versions-view.js";

export function versionsPage(root, { id }, query) {
  let disposed = false;
  let header = null;
  let versions = null;

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.job(id).then((job) => { if (!disposed) build(job); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function build(job) {
    header = liveJobHeader(job, "versions", {
      onJob: (fresh) => { const cur = versions.current(); if (cur && fresh.scriptVersion !== cur.version) versions.reload(); },
    });
    versions = versionsView({
      query,
      path: `#/jobs/${encodeURIComponent(id)}/versions`,
      title: "Script versions",
      editHref: `#/jobs/${encodeURIComponent(id)}/script`,
      editLabel: "Edit script",
      noun: "script",
      list: async () => (await api.versions(id)).map((v) => ({ ...v, savedAt: v.createdAt })),
      source: async (version) => (await api.version(id, version)).script,
      rollback: (version) => api.rollback(id, version),
      onRolledBack: () => { if (header) header.refresh(); },
    });
    fill(root, header.node, versions.node);
    versions.reload().then(() => { root.dataset.loaded = "true"; });
  }

  return {
    dispose() {
      disposed = true;
      if (header) header.dispose();
      if (versions) versions.dispose();
    },
  };
}
