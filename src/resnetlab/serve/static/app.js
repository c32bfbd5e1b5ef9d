// The page: send one image to POST predict in a form, show the top classes as bars.
"use strict";

const $ = (id) => document.getElementById(id);
let maxBytes = Infinity;
let busy = false;

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

async function describeModel() {
  try {
    const response = await fetch("metadata");
    const meta = await response.json();
    const [h, w] = meta.input_size;
    $("model").textContent =
      `${meta.file || meta.model}: ${meta.model}, ${meta.num_classes} classes ` +
      `(${meta.classes.join(", ")}), ${w}x${h} input`;
    maxBytes = meta.max_upload_bytes;
    $("cam-option").hidden = !meta.cam;
  } catch (e) {
    $("model").textContent = "could not read the model's description: " + e;
  }
}

function showBars(top) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const { class: name, probability } of top) {
    const row = document.createElement("li");
    row.dataset.class = name;
    row.dataset.probability = String(probability);
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = percent(probability);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "percent";
    value.textContent = percent(probability);
    row.append(label, track, value);
    bars.append(row);
  }
  $("top-class").textContent = top[0].class;
  $("top-probability").textContent = percent(top[0].probability);
  $("verdict").hidden = false;
}

async function classify(file) {
  if (!file || busy) return;
  $("error").hidden = true;
  if (file.size > maxBytes) {
    // The limit as --max-upload-mb gave it (0.5, not rounded to 1)
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the limit is ` +
      `${Number((maxBytes / 2 ** 20).toPrecision(3))} MB`);
    return;
  }
  busy = true;
  $("result").hidden = false;
  $("preview").src = URL.createObjectURL(file);
  $("image-name").textContent = file.name || "pasted image";
  $("status").textContent = "classifying…";
  $("verdict").hidden = true;
  $("bars").replaceChildren();
  $("cam-figure").hidden = true;
  const cam = !$("cam-option").hidden && $("cam").checked;
  try {
    // As a form's file, so that the server knows its name (photo.heic: a format to convert).
    const form = new FormData();
    form.append("image", file, file.name || "pasted image");
    const response = await fetch("predict" + (cam ? "?cam=1" : ""), {
      method: "POST",
      body: form,
    });
    // uvicorn's own refusal (503 past --max-connections) is plain text, not JSON.
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
    showBars(answer.top);
    if (answer.cam) {
      $("cam-image").src = answer.cam;
      $("cam-caption").textContent = answer.cam_note || "where the model looked";
      $("cam-figure").hidden = false;
    }
    $("status").textContent = "";
  } catch (e) {
    $("status").textContent = "";
    showError(e.message || String(e));
  } finally {
    busy = false;
  }
}

for (const id of ["file", "camera"]) {
  $(id).addEventListener("change", (event) => {
    classify(event.target.files[0]);
    event.target.value = ""; // choosing the same file again still sends it
  });
}

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  classify(event.dataTransfer.files[0]);
});
// Dropped anywhere else, a file would replace the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
window.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) classify(file);
});

describeModel();
