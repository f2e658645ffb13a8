// The web console: jobs, submit, job page. Every call goes through the public API with
// the key the user entered (kept in sessionStorage), so the console can do only what
// that key can. Data from the server is put in the page as text, never as HTML.

// The API root is the folder above the console's own: /ui/ -> /, /prefix/ui/ -> /prefix/.
const API = new URL("../", document.baseURI);
const KEY_ITEM = "pixyz-api-key";
const POLL_MS = 2000;
const FINAL = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
const THUMBS = ["iso.png", "x.png", "y.png", "z.png"];
const PAGE_ROWS = 50;
const AUTO_LOAD_BYTES = 256 * 1024 * 1024;

const $ = (id) => document.getElementById(id);

// -- API -----------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let text = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.detail?.details) text = `${response.status}: ${body.detail.details}`;
  } catch { /* not a JSON error body: keep the status line */ }
  if (response.status === 401) showKeyNeeded(text);
  return new ApiError(response.status, text);
}

async function call(path, { method = "GET", signal, raw = false } = {}) {
  const headers = apiKey() ? { "x-api-key": apiKey() } : {};
  const response = await fetch(new URL(path, API), { method, headers, signal });
  if (!response.ok) throw await errorOf(response);
  return raw ? response : response.json();
}

// -- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "";
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function age(iso) {
  if (!iso) return "";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function duration(time) {
  if (!time?.started) return null;
  const end = time.stopped ? Date.parse(time.stopped) : Date.now();
  return (end - Date.parse(time.started)) / 1000;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function statusBadge(status) {
  return el("span", { class: `status s-${status}` }, status);
}

function progressBar(progress, status) {
  const value = status === "SUCCESS" ? 100 : progress ?? 0;
  const bar = el("progress", { max: 100, value, title: progress === null ? "no progress reported" : `${value}%` });
  return el("span", { class: "progress-cell" }, bar, el("span", { class: "hint" }, progress === null ? "" : `${value}%`));
}

function banner(text, kind = "error") {
  const box = $("banner");
  box.textContent = text || "";
  box.className = kind;
  box.hidden = !text;
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// -- the key ---------------------------------------------------------------------------

function showKeyNeeded(reason) {
  renderKeyState();
  banner(apiKey() ? `The key was refused (${reason}). Enter another one.` : "Enter an API key to use the console.");
  $("key-input").focus();
}

function renderKeyState() {
  const has = Boolean(apiKey());
  $("key-input").hidden = has;
  $("key-save").hidden = has;
  $("key-forget").hidden = !has;
  $("key-state").textContent = has ? "key set for this tab" : "";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("key-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(KEY_ITEM, value);
  $("key-input").value = "";
  renderKeyState();
  banner("");
  route();
});

$("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  detailsCache.clear();
  renderKeyState();
  route();
});

// -- routes: #/jobs and #/jobs/<uuid> ---------------------------------------------------

let leaveView = () => {};

function route() {
  leaveView();
  leaveView = () => {};
  const match = location.hash.match(/^#\/jobs\/([0-9a-fA-F-]{36})$/);
  $("view-jobs").hidden = Boolean(match);
  $("view-job").hidden = !match;
  if (!apiKey()) {
    showKeyNeeded("");
    return;
  }
  leaveView = match ? showJob(match[1]) : showJobs();
}

window.addEventListener("hashchange", route);

// -- jobs table ------------------------------------------------------------------------

const detailsCache = new Map(); // uuid -> details; refreshed while a job is not final
let shownRows = PAGE_ROWS;

function matchesFilter(job, filter) {
  if (!filter) return true;
  if (filter === "active") return !FINAL.has(job.status);
  return job.status === filter;
}

async function detailsFor(jobs) {
  await Promise.all(jobs.map(async (job) => {
    const cached = detailsCache.get(job.uuid);
    if (cached && FINAL.has(cached.status) && cached.status === job.status) return;
    try {
      detailsCache.set(job.uuid, await call(`jobs/${job.uuid}/details`));
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }));
}

function jobRow(job) {
  const d = detailsCache.get(job.uuid);
  const cancel = FINAL.has(job.status) ? "" : el("button", {
    type: "button", class: "small", onclick: () => cancelJob(job.uuid),
  }, "Cancel");
  return el("tr", { "data-uuid": job.uuid, "data-status": job.status },
    el("td", {}, statusBadge(job.status)),
    el("td", {}, d?.process ?? ""),
    el("td", {}, el("a", { href: `#/jobs/${job.uuid}` }, job.name || job.uuid.slice(0, 8))),
    el("td", {}, progressBar(job.progress, job.status)),
    el("td", { title: d?.time_info?.request ?? "" }, age(d?.time_info?.request)),
    el("td", {}, seconds(duration(d?.time_info))),
    el("td", {}, cancel));
}

async function cancelJob(uuid) {
  try {
    await call(`jobs/${uuid}`, { method: "DELETE" });
    banner("");
  } catch (error) {
    banner(`Cancel failed: ${error.message}`);
  }
}

function showJobs() {
  let timer = null;
  let stopped = false;
  loadProcesses();

  async function poll() {
    if (document.hidden) { // a tab in the background asks nothing
      timer = setTimeout(poll, POLL_MS);
      return;
    }
    try {
      const { jobs } = await call("jobs");
      jobs.reverse(); // the store lists jobs in creation order: newest first here
      const filter = $("status-filter").value;
      const matching = jobs.filter((job) => matchesFilter(job, filter));
      const shown = matching.slice(0, shownRows);
      await detailsFor(shown);
      if (stopped) return;
      $("jobs-table").tBodies[0].replaceChildren(...shown.map(jobRow));
      $("jobs-count").textContent = `${shown.length} of ${matching.length} shown (${jobs.length} in all)`;
      $("jobs-more").hidden = matching.length <= shown.length;
    } catch (error) {
      if (error.status !== 401) banner(`Listing jobs failed: ${error.message}`);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  const again = () => { clearTimeout(timer); poll(); };
  $("status-filter").onchange = again;
  $("jobs-more").onclick = () => { shownRows += PAGE_ROWS; again(); };
  window.pixyzRefreshJobs = again;
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

// -- submit ----------------------------------------------------------------------------

let chosenFile = null;
let paramsForm = null; // {collect(): params} for the chosen process

function chooseFile(file) {
  chosenFile = file || null;
  $("drop-text").textContent = chosenFile
    ? `${chosenFile.name} (${bytes(chosenFile.size)})`
    : "Drop a model here, or choose a file.";
}

const dropZone = $("drop-zone");
dropZone.addEventListener("click", () => $("file-input").click());
dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") $("file-input").click();
});
$("file-input").addEventListener("change", () => chooseFile($("file-input").files[0]));
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  const item = event.dataTransfer.items?.[0];
  if (item?.webkitGetAsEntry?.()?.isDirectory) {
    banner("That is a folder: zip it and drop the .zip instead.");
    return;
  }
  chooseFile(event.dataTransfer.files[0]);
});

let processesLoaded = false;

async function loadProcesses() {
  if (processesLoaded) return;
  try {
    const { processes } = await call("processes");
    const select = $("process-select");
    select.replaceChildren(...processes.map((name) => el("option", { value: name }, name)));
    const preferred = processes.includes("convert_file") ? "convert_file" : processes[0];
    select.value = preferred;
    processesLoaded = true;
    await showProcess(select.value);
  } catch (error) {
    if (error.status !== 401) banner(`Listing processes failed: ${error.message}`);
  }
}

$("process-select").addEventListener("change", (event) => showProcess(event.target.value));

async function showProcess(name) {
  $("script-field").hidden = name !== "custom";
  const doc = await call(`processes/${encodeURIComponent(name)}`);
  const text = doc.doc.split("\n").slice(2).join("\n").split("\n\n")[0];
  $("process-doc").textContent = text.trim();
  paramsForm = paramsFields(doc.params_schema);
}

// A form from the params' JSON Schema: number, integer, boolean, string and enum fields;
// anything else is a JSON text field. Only fields the user changed are sent, so the
// process's defaults (shown prefilled) stay the server's to apply.
function paramsFields(schema) {
  const box = $("params-fields");
  box.replaceChildren(el("legend", {}, "Params"));
  if (!schema) {
    const area = el("textarea", { rows: 3, spellcheck: "false", name: "params-json" }, "{}");
    box.append(el("label", { class: "wide" }, "Any JSON object", area));
    return { collect: () => JSON.parse(area.value || "{}") };
  }
  const defs = schema.$defs || {};
  const resolve = (s) => (s?.$ref ? defs[s.$ref.split("/").pop()] || {} : s || {});
  const fields = [];
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    let prop = resolve(raw);
    let nullable = false;
    if (Array.isArray(prop.anyOf)) {
      const kinds = prop.anyOf.map(resolve).filter((s) => s.type !== "null");
      nullable = kinds.length < prop.anyOf.length;
      if (kinds.length === 1) prop = { ...kinds[0], default: raw.default, description: raw.description, title: raw.title };
    }
    const description = raw.description || prop.description || "";
    const fallback = raw.default;
    let input;
    let read;
    if (prop.enum && !prop.anyOf && !prop.oneOf) {
      const options = nullable ? [el("option", { value: "" }, "(none)")] : [];
      for (const v of prop.enum) options.push(el("option", { value: JSON.stringify(v) }, String(v)));
      input = el("select", {}, ...options);
      input.value = fallback === null || fallback === undefined ? "" : JSON.stringify(fallback);
      read = () => (input.value === "" ? null : JSON.parse(input.value));
    } else if (prop.type === "boolean") {
      input = el("input", { type: "checkbox" });
      input.checked = Boolean(fallback);
      read = () => input.checked;
    } else if (prop.type === "number" || prop.type === "integer") {
      input = el("input", {
        type: "number",
        step: prop.type === "integer" ? 1 : "any",
        min: prop.minimum ?? prop.exclusiveMinimum, max: prop.maximum ?? prop.exclusiveMaximum,
        placeholder: nullable ? "(none)" : "",
      });
      input.value = fallback ?? "";
      read = () => (input.value === "" ? null : Number(input.value));
    } else if (prop.type === "string" && !prop.anyOf && !prop.oneOf) {
      input = el("input", { type: "text", placeholder: nullable ? "(none)" : "" });
      input.value = fallback ?? "";
      read = () => (input.value === "" && nullable ? null : input.value);
    } else {
      input = el("textarea", { rows: 1, spellcheck: "false", class: "json" });
      input.value = fallback === undefined ? "" : JSON.stringify(fallback);
      read = () => (input.value.trim() === "" ? undefined : JSON.parse(input.value));
    }
    input.name = `param-${name}`;
    input.dataset.param = name;
    let touched = false;
    input.addEventListener("input", () => { touched = true; });
    input.addEventListener("change", () => { touched = true; });
    fields.push({ name, read: () => (touched ? read() : undefined) });
    const label = el("label", { title: description }, el("span", { class: "param-name" }, name), input);
    box.append(label);
  }
  if (!fields.length) box.append(el("p", { class: "hint" }, "This process takes no params."));
  return {
    collect() {
      const params = {};
      for (const field of fields) {
        let value;
        try {
          value = field.read();
        } catch (error) {
          throw new Error(`params.${field.name}: not valid JSON (${error.message})`);
        }
        if (value !== undefined) params[field.name] = value;
      }
      return params;
    },
  };
}

$("submit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const status = $("submit-status");
  let params;
  let config;
  try {
    params = paramsForm ? paramsForm.collect() : {};
    config = JSON.parse($("config-input").value || "{}");
  } catch (error) {
    status.textContent = error.message;
    return;
  }
  const form = new FormData();
  form.append("process", $("process-select").value);
  form.append("params", JSON.stringify(params));
  form.append("config", JSON.stringify(config));
  if ($("job-name").value.trim()) form.append("name", $("job-name").value.trim());
  if (chosenFile) form.append("file", chosenFile, chosenFile.name);
  const script = $("script-input").files[0];
  if ($("process-select").value === "custom" && script) form.append("script", script, script.name);

  // XMLHttpRequest, not fetch: it reports upload progress.
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  xhr.open("POST", new URL("jobs", API));
  xhr.setRequestHeader("x-api-key", apiKey());
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
  };
  xhr.onload = () => {
    bar.hidden = true;
    $("submit-button").disabled = false;
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch { /* shown as text below */ }
    if (xhr.status === 200 && body?.uuid) {
      status.replaceChildren("Submitted ", el("a", { href: `#/jobs/${body.uuid}` }, body.uuid));
      window.pixyzRefreshJobs?.();
    } else {
      status.textContent = `Refused: ${body?.detail?.details ?? `${xhr.status} ${xhr.responseText}`}`;
      if (xhr.status === 401) showKeyNeeded(status.textContent);
    }
  };
  xhr.onerror = () => {
    bar.hidden = true;
    $("submit-button").disabled = false;
    status.textContent = "The upload failed (network error).";
  };
  bar.value = 0;
  bar.hidden = false;
  $("submit-button").disabled = true;
  status.textContent = chosenFile ? `Uploading ${chosenFile.name}…` : "Submitting…";
  xhr.send(form);
});

// -- job page --------------------------------------------------------------------------

function showJob(uuid) {
  let stopped = false;
  let timer = null;
  let streamAbort = null;
  const blobUrls = [];
  let outputsShown = null; // the outputs list last rendered
  let viewer = null;

  $("job-title").textContent = uuid;
  for (const id of ["thumbs-panel", "viewer-panel", "metadata-panel", "job-error", "job-warnings-box"]) $(id).hidden = true;
  $("job-steps").tBodies[0].replaceChildren();
  $("job-outputs").tBodies[0].replaceChildren();
  $("thumbs").replaceChildren();
  $("job-facts").tBodies[0].replaceChildren();

  async function refresh() {
    let d;
    try {
      d = await call(`jobs/${uuid}/details`);
    } catch (error) {
      if (error.status !== 401) banner(`Job ${uuid}: ${error.message}`);
      return null;
    }
    if (stopped) return null;
    renderDetails(d);
    if (FINAL.has(d.status) && outputsShown === null) {
      outputsShown = [];
      await renderOutputs(d);
    }
    return d;
  }

  function renderDetails(d) {
    $("job-title").textContent = d.name || d.uuid;
    $("job-status").replaceWith(Object.assign(statusBadge(d.status), { id: "job-status" }));
    $("job-progress").value = d.status === "SUCCESS" ? 100 : d.progress ?? 0;
    $("job-cancel").hidden = FINAL.has(d.status);
    $("job-archive").hidden = !(FINAL.has(d.status));
    const t = d.time_info || {};
    const facts = [
      ["uuid", d.uuid], ["process", d.process], ["queue", d.queue],
      ["requested", t.request ? `${t.request} (${age(t.request)})` : ""],
      ["started", t.started || ""], ["stopped", t.stopped || ""],
      ["duration", seconds(duration(t))], ["retries", d.retry],
    ];
    if (d.node) facts.push(["node", d.node]);
    if (d.children?.length) facts.push(["children", `${d.children.length}: ${d.children.map((c) => c.status ?? "").join(", ")}`]);
    if (d.callback) facts.push(["callback", JSON.stringify(d.callback)]);
    $("job-facts").tBodies[0].replaceChildren(...facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    $("job-steps").tBodies[0].replaceChildren(...(d.steps || []).map((s, i) =>
      el("tr", {}, el("td", {}, i + 1), el("td", {}, s.info), el("td", {}, seconds(s.duration)))));
    $("job-error").hidden = !(d.error || d.traceback);
    $("job-error-text").textContent = d.error || "";
    $("job-traceback").textContent = d.traceback || "";
    $("job-traceback-box").hidden = !d.traceback;
    $("job-warnings-box").hidden = !d.warnings?.length;
    $("job-warnings").replaceChildren(...(d.warnings || []).map((w) => el("li", {}, w)));
    if (d.result?.metadata && $("metadata-panel").hidden) renderMetadata(d.result.metadata);
  }

  async function fetchOutput(name, signal) {
    return call(`jobs/${uuid}/outputs/${name.split("/").map(encodeURIComponent).join("/")}`, { raw: true, signal });
  }

  async function renderOutputs(d) {
    let outputs;
    try {
      ({ outputs } = await call(`jobs/${uuid}/outputs`));
    } catch (error) {
      banner(`Outputs of ${uuid}: ${error.message}`);
      return;
    }
    if (stopped) return;
    outputsShown = outputs;
    const rows = new Map();
    $("job-outputs").tBodies[0].replaceChildren(...outputs.map((name) => {
      const size = el("td", { class: "size" });
      const button = el("button", {
        type: "button", class: "small",
        onclick: async () => {
          try {
            download(await (await fetchOutput(name)).blob(), name.split("/").pop());
          } catch (error) { banner(`Download of ${name} failed: ${error.message}`); }
        },
      }, "Download");
      const row = el("tr", { "data-output": name }, el("td", {}, name), size, el("td", {}, button));
      rows.set(name, size);
      return row;
    }));
    if (!outputs.length) $("job-outputs").tBodies[0].append(el("tr", {}, el("td", { colspan: 3, class: "hint" }, "no outputs")));

    // Sizes: the Content-Length of each download, its body left unread.
    for (const name of outputs) {
      const controller = new AbortController();
      fetchOutput(name, controller.signal).then((response) => {
        rows.get(name).textContent = bytes(Number(response.headers.get("content-length")));
        controller.abort();
      }).catch(() => {});
    }

    const thumbs = THUMBS.filter((name) => outputs.includes(name));
    if (thumbs.length) {
      $("thumbs-panel").hidden = false;
      $("thumbs").replaceChildren(...await Promise.all(thumbs.map(async (name) => {
        const img = el("img", { alt: name, "data-thumb": name });
        try {
          const url = URL.createObjectURL(await (await fetchOutput(name)).blob());
          blobUrls.push(url);
          img.src = url;
        } catch (error) { img.alt = `${name}: ${error.message}`; }
        return el("figure", {}, img, el("figcaption", {}, name));
      })));
    }

    const metadataFile = outputs.find((name) => name === "metadata.json") || outputs.find((name) => name.endsWith("metadata.json"));
    if (metadataFile) {
      try {
        renderMetadata(await (await fetchOutput(metadataFile)).json());
      } catch (error) { banner(`metadata.json: ${error.message}`); }
    } else if (d.result?.metadata) {
      renderMetadata(d.result.metadata);
    }

    const models = outputs.filter((name) => name.toLowerCase().endsWith(".glb"));
    if (models.length) await showModels(models);
  }

  async function showModels(models) {
    $("viewer-panel").hidden = false;
    const select = $("viewer-select");
    const preferred = models.find((m) => m === "preview.glb") || models[0];
    select.replaceChildren(...models.map((m) => el("option", { value: m }, m)));
    select.value = preferred;
    const { Viewer } = await import("./viewer.js");
    if (stopped) return;
    viewer = new Viewer($("viewer"));
    $("viewer-wireframe").checked = false;
    $("viewer-fit").onclick = () => viewer.fit();
    $("viewer-wireframe").onchange = (e) => viewer.setWireframe(e.target.checked);
    const load = async () => {
      const name = select.value;
      $("viewer-status").textContent = `loading ${name}…`;
      try {
        const response = await fetchOutput(name);
        const size = Number(response.headers.get("content-length"));
        if (size > AUTO_LOAD_BYTES && !confirm(`${name} has ${bytes(size)}. Load it in the viewer?`)) {
          $("viewer-status").textContent = "";
          return;
        }
        const stats = await viewer.load(await response.arrayBuffer());
        viewer.setWireframe($("viewer-wireframe").checked);
        $("viewer-status").textContent = `${name}: ${stats.meshes} meshes, ${stats.triangles.toLocaleString()} triangles`;
      } catch (error) {
        $("viewer-status").textContent = `${name} could not be shown: ${error.message}`;
      }
    };
    select.onchange = load;
    await load();
  }

  function renderMetadata(metadata) {
    $("metadata-panel").hidden = false;
    const rows = Object.entries(metadata).map(([key, value]) => {
      let cell;
      if (value === null || typeof value !== "object") {
        cell = el("td", {}, typeof value === "number" ? value.toLocaleString() : String(value));
      } else {
        const text = JSON.stringify(value);
        cell = text.length <= 120
          ? el("td", { class: "mono" }, text)
          : el("td", {}, el("details", {}, el("summary", {}, Array.isArray(value) ? `${value.length} items` : `${Object.keys(value).length} keys`),
            el("pre", {}, JSON.stringify(value, null, 2))));
      }
      return el("tr", {}, el("th", {}, key), cell);
    });
    $("job-metadata").tBodies[0].replaceChildren(...rows);
  }

  $("job-cancel").onclick = async () => {
    await cancelJob(uuid);
    refresh();
  };
  $("job-archive").onclick = async () => {
    $("job-archive").disabled = true;
    try {
      for (;;) { // 425 while the archive is being zipped
        const response = await fetch(new URL(`jobs/${uuid}/outputs/archive`, API), { headers: { "x-api-key": apiKey() } });
        if (response.status === 425) { await new Promise((r) => setTimeout(r, 1000)); continue; }
        if (!response.ok) throw await errorOf(response);
        download(await response.blob(), `${uuid}.zip`);
        break;
      }
    } catch (error) {
      banner(`Archive download failed: ${error.message}`);
    } finally {
      $("job-archive").disabled = false;
    }
  };

  // Live updates: the job's event stream if the server has one, else polling.
  async function follow() {
    const d = await refresh();
    if (stopped || !d || FINAL.has(d.status)) return;
    if (await followEvents()) return;
    const tick = async () => {
      const now = await refresh();
      if (!stopped && now && !FINAL.has(now.status)) timer = setTimeout(tick, POLL_MS);
    };
    timer = setTimeout(tick, POLL_MS);
  }

  // `GET /jobs/{uuid}/events` (text/event-stream), read with fetch because EventSource
  // cannot send the key header. Each event is a cue to refresh the details; false when
  // the server has no such stream (then the caller polls).
  async function followEvents() {
    streamAbort = new AbortController();
    let response;
    try {
      response = await fetch(new URL(`jobs/${uuid}/events`, API), {
        headers: { "x-api-key": apiKey(), accept: "text/event-stream" }, signal: streamAbort.signal,
      });
    } catch { return false; }
    if (!response.ok || !(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      streamAbort.abort();
      return false;
    }
    (async () => {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = false;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done || stopped) break;
          // An event (not a `: ping` comment): refresh once it settles.
          if (/^(event|data):/m.test(value) && !pending) {
            pending = true;
            setTimeout(async () => { pending = false; await refresh(); }, 200);
          }
        }
      } catch { /* aborted on leaving the page */ }
      if (!stopped) {
        const d = await refresh();
        if (d && !FINAL.has(d.status)) timer = setTimeout(follow, POLL_MS);
      }
    })();
    return true;
  }

  follow();
  return () => {
    stopped = true;
    clearTimeout(timer);
    streamAbort?.abort();
    viewer?.dispose();
    for (const url of blobUrls) URL.revokeObjectURL(url);
  };
}

renderKeyState();
route();
