// The daer search page: plain DOM code, no framework and no build step.
"use strict";

const $ = (id) => document.getElementById(id);

function fmt(x) {
  return typeof x === "number" ? x.toFixed(3) : "–";
}

async function loadCard() {
  try {
    const r = await fetch("/api/model");
    const card = await r.json();
    const c = card.components || {};
    const m = card.metrics;
    const idx = card.index || {};
    const counts = idx.counts || {};
    const parts = [
      `${card.preset || card.name || "custom"} on ${card.dataset || "?"}`,
      [c.text_encoder, c.image_encoder, c.fusion, c.enhancement, c.relation]
        .filter(Boolean).join(" · "),
      m ? `test mAP i→t ${fmt(m.i2t)}, t→i ${fmt(m.t2i)} (chance ${fmt(m.chance)})` : "no metrics",
      `${counts.image || 0} images, ${counts.text || 0} texts indexed`,
    ];
    $("model-card").textContent = parts.join(" — ");
  } catch (e) {
    $("model-card").textContent = "model card unavailable: " + e;
  }
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function card(hit, kind) {
  const div = document.createElement("article");
  div.className = "result-card";
  div.dataset.id = hit.id;
  if (hit.thumbnail) {
    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.alt = hit.id;
    img.loading = "lazy";
    div.appendChild(img);
  }
  const head = document.createElement("div");
  head.className = "score";
  head.textContent = `#${hit.rank}  ${hit.score.toFixed(4)}`;
  div.appendChild(head);
  if (hit.labels && hit.labels.length) {
    const labels = document.createElement("div");
    labels.className = "labels";
    for (const l of hit.labels) {
      const span = document.createElement("span");
      span.textContent = l;
      labels.appendChild(span);
    }
    div.appendChild(labels);
  }
  if (kind === "text" && hit.text) {
    const p = document.createElement("p");
    p.className = "text";
    p.textContent = hit.text;
    div.appendChild(p);
  }
  const id = document.createElement("div");
  id.className = "muted id";
  id.textContent = hit.id;
  div.appendChild(id);
  return div;
}

function render(data) {
  const grid = $("results");
  grid.replaceChildren(...data.results.map((h) => card(h, data.results_kind)));
  const ms = data.milliseconds || {};
  const total = Object.values(ms).reduce((a, b) => a + b, 0);
  const how = data.exhaustive
    ? `all ${data.gallery_size} ${data.results_kind}s scored`
    : `${data.candidates} of ${data.gallery_size} ${data.results_kind}s re-ranked`;
  $("status").textContent =
    `${data.results.length} ${data.results_kind}s for “${data.query}” — ${how}, ${total.toFixed(1)} ms`;
}

async function submit(request) {
  showError("");
  $("status").textContent = "searching…";
  try {
    const r = await request();
    const data = await r.json();
    if (!r.ok) {
      const d = data.detail;
      showError(typeof d === "string" ? d : JSON.stringify(d));
      $("status").textContent = "";
      return;
    }
    render(data);
  } catch (e) {
    showError("request failed: " + e);
    $("status").textContent = "";
  }
}

$("text-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const query = $("query").value;
  if (!query.trim()) {
    showError("the query is empty; type what to look for");
    return;
  }
  submit(() => fetch("/api/search/text", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({query, k: Number($("k").value)}),
  }));
});

$("image-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = $("image-file").files[0];
  if (!file) {
    showError("choose an image file first");
    return;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value);
  submit(() => fetch("/api/search/image", {method: "POST", body: form}));
});

loadCard();
