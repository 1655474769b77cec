"""The demo page: one HTML document with inline CSS and JavaScript and no external assets.

It is a Python string rather than a data file so that every install (wheel, editable, zip) carries
it without package-data settings. The script asks ``/api/info`` for the classes, options and limits
of the loaded generator, builds the form from them, and shows the server's one-line error when a
request is refused.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>artok demo</title>
<style>
  :root { --ink: #1d2330; --muted: #5b6475; --line: #d8dde6; --accent: #2f5fd0; --bad: #b3261e; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
         background: #f4f6fa; }
  header { padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  h1 { margin: 0; font-size: 20px; }
  #subtitle { margin: 2px 0 0; color: var(--muted); }
  main { display: flex; flex-wrap: wrap; gap: 20px; padding: 20px 24px; align-items: flex-start; }
  form, section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; }
  form { flex: 0 0 322px; }
  section { flex: 1 1 420px; min-height: 200px; }
  .field { display: grid; grid-template-columns: 112px 1fr; align-items: center; gap: 8px; margin-bottom: 10px; }
  .field[hidden] { display: none; }
  label { font-weight: 600; }
  input, select, button { font: inherit; }
  input, select { width: 100%; padding: 5px 7px; border: 1px solid var(--line); border-radius: 5px; background: #fff; }
  .seed { display: flex; gap: 6px; }
  .seed input { flex: 1 1 auto; min-width: 0; }
  .seed button { flex: 0 0 auto; padding: 5px 8px; border: 1px solid var(--line); border-radius: 5px;
                 background: #f4f6fa; cursor: pointer; }
  #generate { width: 100%; margin-top: 6px; padding: 9px; border: 0; border-radius: 6px; background: var(--accent);
              color: #fff; font-weight: 600; cursor: pointer; }
  #generate:disabled { background: #8aa2dc; cursor: wait; }
  .hint { margin: 10px 0 0; color: var(--muted); font-size: 13px; }
  #error { margin: 12px 0 0; padding: 8px 10px; border-radius: 5px; background: #fdecea; color: var(--bad); }
  #error[hidden], #timing[hidden], #grid[hidden] { display: none; }
  h2 { margin: 0 0 10px; font-size: 16px; }
  #timing { margin: 0 0 12px; color: var(--muted); }
  #grid { display: block; max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid var(--line); }
  #empty { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1>artok demo</h1>
  <p id="subtitle">loading the generator&hellip;</p>
</header>
<main>
  <form id="controls" autocomplete="off" novalidate>
    <div class="field"><label for="label">Class</label><select id="label"></select></div>
    <div class="field" data-option="cfg_scale"><label for="cfg_scale">CFG scale</label>
      <input id="cfg_scale" type="number" step="any"></div>
    <div class="field" data-option="temperature"><label for="temperature">Temperature</label>
      <input id="temperature" type="number" step="any"></div>
    <div class="field" data-option="top_k"><label for="top_k">Top-k</label>
      <input id="top_k" type="number" step="1"></div>
    <div class="field" data-option="top_p"><label for="top_p">Top-p</label>
      <input id="top_p" type="number" step="any"></div>
    <div class="field"><label for="seed">Seed</label>
      <div class="seed"><input id="seed" type="number" step="1"><button id="random-seed" type="button"
        title="pick a random seed">Random</button></div></div>
    <div class="field"><label for="count">Images</label><input id="count" type="number" step="1"></div>
    <div class="field"><label for="sampler">Sampler</label><select id="sampler"></select></div>
    <button id="generate" type="submit" disabled>Generate</button>
    <p id="error" role="alert" hidden></p>
    <p class="hint">Top-k 0 keeps every token; top-p 1 and CFG scale 1 are off. The same seed gives the same images.</p>
  </form>
  <section aria-live="polite">
    <h2 id="result-title">Samples</h2>
    <p id="timing" hidden></p>
    <p id="empty">Pick a class and press Generate.</p>
    <img id="grid" alt="grid of generated samples" hidden>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const NUMBER_FIELDS = ["cfg_scale", "temperature", "top_k", "top_p", "seed", "count"];
const SAMPLER_NAMES = { plain: "plain loop", engine: "fast engine" };
let info = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function addOption(select, value, text) {
  const option = document.createElement("option");
  option.value = String(value);
  option.textContent = text;
  select.appendChild(option);
}

function buildForm(data) {
  info = data;
  $("subtitle").textContent = `${data.kind} generator ${data.name} on ${data.device} \u00b7 ` +
    `${data.classes.length} classes \u00b7 ${data.tokens_per_image} tokens per image`;
  data.classes.forEach((name, index) => addOption($("label"), index, name === String(index) ? name : `${index}: ${name}`));
  data.samplers.forEach((name) => addOption($("sampler"), name, SAMPLER_NAMES[name] || name));
  document.querySelectorAll("[data-option]").forEach((row) => {
    row.hidden = !data.options.includes(row.dataset.option);
  });
  for (const name of NUMBER_FIELDS) {
    const limits = data.limits[name];
    if (limits) { $(name).min = limits[0]; $(name).max = limits[1]; }
    if (name in data.defaults) { $(name).value = data.defaults[name]; }
  }
  $("label").value = String(data.defaults.label);
  $("sampler").value = data.defaults.sampler;
  $("generate").disabled = false;
}

// Empty or unparsable inputs are sent as null: the server names the field, so there is one
// source of truth for what is allowed.
function readNumber(name) {
  const value = $(name).valueAsNumber;
  return Number.isNaN(value) ? null : value;
}

function requestBody() {
  const body = { label: Number($("label").value), sampler: $("sampler").value };
  for (const name of NUMBER_FIELDS) {
    if (!$(name).closest(".field").hidden) { body[name] = readNumber(name); }
  }
  return body;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (error) {
    return { error: `the server answered ${response.status} without JSON` };
  }
}

function showResult(result) {
  const grid = $("grid");
  grid.src = "data:image/png;base64," + result.png;
  grid.hidden = false;
  $("empty").hidden = true;
  $("result-title").textContent = `Samples: ${result.class_name}`;
  const plural = result.count === 1 ? "image" : "images";
  $("timing").textContent = `${result.count} ${plural}, ${result.tokens} tokens, seed ${result.seed}: ` +
    `${result.seconds.toFixed(2)} s (${SAMPLER_NAMES[result.sampler] || result.sampler})`;
  $("timing").hidden = false;
}

async function generate(event) {
  event.preventDefault();
  clearError();
  $("generate").disabled = true;
  $("generate").textContent = "Generating\\u2026";
  try {
    const response = await fetch("/api/sample", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(requestBody()),
    });
    const result = await readJson(response);
    if (!response.ok) { showError(result.error || `request failed (${response.status})`); return; }
    showResult(result);
  } catch (error) {
    showError(`cannot reach the server: ${error.message}`);
  } finally {
    $("generate").disabled = false;
    $("generate").textContent = "Generate";
  }
}

async function start() {
  $("controls").addEventListener("submit", generate);
  $("random-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2147483647); });
  try {
    const response = await fetch("/api/info");
    const data = await readJson(response);
    if (!response.ok) { showError(data.error || `cannot load the generator (${response.status})`); return; }
    buildForm(data);
  } catch (error) {
    showError(`cannot reach the server: ${error.message}`);
  }
}

start();
</script>
</body>
</html>
"""
