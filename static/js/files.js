// The files page: upload several files at once, picked or dropped on the folder's card, each
// PUT to the storage API (/api/v1/storage/<folder>/<name>) with its own progress bar; the
// folder's table is then redrawn from the page itself. Without script the form posts them.
"use strict";

const UNITS = ["bytes", "KB", "MB", "GB", "TB"];
const PARALLEL_UPLOADS = 2;

// Sizes as the page's table shows them (Django's filesizeformat: powers of 1024).
function humanSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} ${value === 1 ? "byte" : "bytes"}` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function errorMessage(xhr) {
  try {
    return JSON.parse(xhr.responseText).error.message;
  } catch {
    return `The server answered ${xhr.status} ${xhr.statusText}.`;
  }
}

class Uploader {
  constructor(card) {
    this.card = card;
    this.baseUrl = card.dataset.uploadUrl;
    this.maxBytes = Number(card.dataset.maxBytes);
    this.csrf = card.querySelector("input[name=csrfmiddlewaretoken]").value;
    this.list = document.getElementById("uploads");
    this.queue = [];
    this.running = 0;
  }

  add(files) {
    for (const file of files) {
      const row = this.row(file);
      if (file.size > this.maxBytes) {
        this.show(row, false, `Over the limit of ${humanSize(this.maxBytes)}.`);
      } else {
        this.queue.push({ file, row });
      }
    }
    this.next();
  }

  refuse(name, text) {
    this.show(this.row({ name, size: 0 }), false, text);
  }

  row(file) {
    const row = element("li", "upload");
    row.dataset.name = file.name;
    const name = element("span", "upload-name", file.name);
    const bar = element("progress");
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    const status = element("span", "upload-status muted", `waiting · ${humanSize(file.size)}`);
    row.append(name, bar, status);
    this.list.append(row);
    return row;
  }

  next() {
    while (this.running < PARALLEL_UPLOADS && this.queue.length) {
      const { file, row } = this.queue.shift();
      this.running += 1;
      this.send(file, row);
    }
  }

  send(file, row) {
    const bar = row.querySelector("progress");
    const status = row.querySelector(".upload-status");
    const xhr = new XMLHttpRequest();
    // The name is one segment of the path: a "/" or "#" in it must not reach the URL as such.
    xhr.open("PUT", this.baseUrl + encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-CSRFToken", this.csrf);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        bar.max = Math.max(event.total, 1);
        bar.value = event.loaded;
        status.textContent = `${humanSize(event.loaded)} of ${humanSize(event.total)}`;
      }
    });
    // XMLHttpRequest ends with exactly one of load, error and abort ("loadend" follows each).
    xhr.addEventListener("load", () => {
      const ok = xhr.status === 201;
      this.show(row, ok, ok ? `uploaded · ${humanSize(file.size)}` : errorMessage(xhr));
    });
    xhr.addEventListener("error", () => this.show(row, false, "The connection failed."));
    xhr.addEventListener("abort", () => this.show(row, false, "Stopped."));
    xhr.addEventListener("loadend", () => {
      this.running -= 1;
      this.next();
      if (this.running === 0 && this.queue.length === 0) {
        this.refresh();
      }
    });
    row.classList.add("sending");
    xhr.send(file);
  }

  show(row, ok, text) {
    const bar = row.querySelector("progress");
    if (ok) {
      bar.value = bar.max;
    }
    row.classList.remove("sending");
    row.classList.add(ok ? "done" : "failed");
    const status = row.querySelector(".upload-status");
    status.textContent = text;
    status.classList.toggle("muted", ok);
  }

  // Redraw the folder's table from a fresh copy of this page: the same template, no reload.
  async refresh() {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const body = fresh.querySelector("table.files tbody");
    if (body) {
      this.card.querySelector("table.files tbody").replaceWith(body);
    }
  }
}

function dropped(event) {
  const items = [...(event.dataTransfer.items || [])];
  const folders = items.filter((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()?.isDirectory);
  const files = [...event.dataTransfer.files].filter(
    (file) => !folders.some((item) => item.getAsFile()?.name === file.name)
  );
  return { files, folders: folders.map((item) => item.getAsFile()?.name || "a folder") };
}

document.addEventListener("DOMContentLoaded", () => {
  const card = document.querySelector("#files[data-upload-url]");
  if (!card) {
    return;
  }
  card.classList.add("scripted");
  const uploader = new Uploader(card);
  const input = document.getElementById("upload-input");
  input.addEventListener("change", () => {
    uploader.add([...input.files]);
    input.value = "";
  });

  // A file dropped anywhere else would make the browser open it and leave the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }
  let depth = 0; // dragenter and dragleave fire for every child crossed
  card.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    card.classList.add("dragging");
  });
  card.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) {
      card.classList.remove("dragging");
    }
  });
  card.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  card.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    card.classList.remove("dragging");
    const { files, folders } = dropped(event);
    for (const name of folders) {
      uploader.refuse(name, "A folder: create it with New folder, then drop its files into it.");
    }
    uploader.add(files);
  });
});
