// voidflow review room: the overview (filters, live updates, resume) and the shot page (player, comparisons,
// decisions, mask prompts). Every read and decision goes through the JSON API under /api/ (see the README).
"use strict";

(() => {
  const body = document.body;
  const isStatic = body.dataset.static === "yes";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // ---- shared: the reviewer's name, JSON calls, background jobs -------------------------------------------------
  const reviewerInput = $("#reviewer");
  if (reviewerInput) {
    const saved = window.localStorage.getItem("voidflow.reviewer");
    if (saved) reviewerInput.value = saved;
    reviewerInput.addEventListener("change", () => window.localStorage.setItem("voidflow.reviewer", reviewerInput.value));
  }
  const reviewer = () => (reviewerInput ? reviewerInput.value.trim() : "");

  async function call(method, url, payload) {
    const response = await fetch(url, {
      method,
      headers: payload === undefined ? {} : { "Content-Type": "application/json" },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    return answer;
  }

  function say(text, isError = false) {
    const line = $("#job");
    if (!line) return;
    line.textContent = text;
    line.classList.toggle("error", isError);
  }

  async function follow(job, then) {
    say(`${job.label}: ${job.state}`);
    while (job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await call("GET", `/api/jobs/${job.id}`);
      say(`${job.label}: ${job.state}${job.last_line ? " · " + job.last_line : ""}`);
    }
    if (job.state !== "done") say(`${job.label}: ${job.state} (exit ${job.returncode}) · ${job.last_line}`, true);
    if (then) then(job);
  }

  // ---- overview ---------------------------------------------------------------------------------------------------
  function overview() {
    let filter = "";
    const applyFilter = () => {
      $$(".card").forEach((card) => { card.hidden = filter !== "" && card.dataset.state !== filter; });
      $$(".filters [data-filter]").forEach((b) => b.classList.toggle("active", b.dataset.filter === filter));
    };
    $$(".filters [data-filter]").forEach((button) => button.addEventListener("click", () => {
      filter = button.dataset.filter;
      applyFilter();
    }));
    if (isStatic) return;

    const signature = (page) => JSON.stringify(page.cards.map((c) => [c.name, c.filter_state, c.version,
      c.mask_awaiting, c.mask_decision, c.versions_awaiting, c.stages.map((s) => s.stage + s.state)]));
    let seen = signature(data);
    async function refresh() {
      try {
        const page = await call("GET", `/api/batches/${data.batch_id}`);
        $("#batch-state").textContent = page.state;
        $("#batch-state").className = `pill ${page.state}`;
        $$("[data-count]").forEach((count) => { count.textContent = page.counts[count.dataset.count] || 0; });
        const now = signature(page);
        if (now !== seen) {
          const response = await fetch(`/batches/${data.batch_id}/cards`);
          $("#cards").innerHTML = await response.text(); // our own template, rendered with autoescape
          seen = now;
          applyFilter();
        }
      } catch (error) {
        say(`live updates paused: ${error.message}`, true);
      }
      setTimeout(refresh, 2000);
    }
    setTimeout(refresh, 2000);

    $("#resume").addEventListener("click", async () => {
      try {
        const job = await call("POST", `/api/batches/${data.batch_id}/resume`, { reviewer: reviewer() });
        follow(job);
      } catch (error) {
        say(error.message, true);
      }
    });
  }

  // ---- timecode ---------------------------------------------------------------------------------------------------
  function timecode(start, offset, rate) {
    const nominal = Math.round(rate);
    const drop = Math.abs(rate * 1001 / 1000 - nominal) < 0.01 && nominal % 30 === 0 ? nominal / 15 : 0;
    const parts = start.split(/[:;]/).map(Number);
    if (parts.length !== 4 || parts.some(Number.isNaN)) return String(Number(start) + offset);
    const [h, m, s, f] = parts;
    const minutes = 60 * h + m;
    let frames = ((h * 60 + m) * 60 + s) * nominal + f - drop * (minutes - Math.floor(minutes / 10)) + offset;
    if (drop) {
      const perTen = nominal * 600 - drop * 9, perMinute = nominal * 60 - drop;
      const tens = Math.floor(frames / perTen), rest = frames % perTen;
      frames += drop * 9 * tens + (rest > drop ? drop * Math.floor((rest - drop) / perMinute) : 0);
    }
    const pad = (n) => String(n).padStart(2, "0");
    const ff = frames % nominal, ss = Math.floor(frames / nominal) % 60;
    const mm = Math.floor(frames / (nominal * 60)) % 60, hh = Math.floor(frames / (nominal * 3600));
    return `${pad(hh)}:${pad(mm)}:${pad(ss)}${drop ? ";" : ":"}${pad(ff)}`;
  }

  // ---- shot page --------------------------------------------------------------------------------------------------
  function shotPage() {
    const page = data.page, batch = data.batch_id, shot = page.card.name;
    const stage = $("#stage"), scrub = $("#scrub"), readout = $("#readout");
    const videos = { plate: $("#v-plate"), overlay: $("#v-overlay"), a: $("#v-a"), b: $("#v-b") };
    const delivered = page.versions.filter((v) => v.review);
    const rate = page.rate;
    let frame = page.head, mode = "plate", flipped = false, playing = false, wipeAt = 50;
    if (page.width && page.height) stage.style.setProperty("--aspect", `${page.width} / ${page.height}`);

    const source = (video, media) => {
      video.dataset.fps = media ? media.fps || rate : rate;
      if (media) video.src = media.url; else video.removeAttribute("src");
    };
    source(videos.plate, page.mask && page.mask.plate_proxy);
    source(videos.overlay, page.mask && page.mask.preview);
    for (const select of [$("#version-a"), $("#version-b")]) {
      for (const version of delivered) select.add(new Option(version.label, version.label));
    }
    if (delivered.length) {
      $("#version-a").value = delivered[delivered.length - 1].label;
      $("#version-b").value = delivered[Math.max(0, delivered.length - 2)].label;
      source(videos.a, delivered[delivered.length - 1].review);
      source(videos.b, delivered[Math.max(0, delivered.length - 2)].review);
    }
    const pickVersion = (which) => {
      const label = $(`#version-${which}`).value;
      const version = delivered.find((v) => v.label === label);
      source(videos[which], version && version.review);
      seek(frame);
    };
    $("#version-a").addEventListener("change", () => pickVersion("a"));
    $("#version-b").addEventListener("change", () => pickVersion("b"));

    const result = () => (flipped ? videos.b : videos.a);
    function visible() {
      if (mode === "plate") return [videos.plate];
      if (mode === "overlay") return [videos.overlay];
      if (mode === "result") return [result()];
      return [videos.plate, result()];
    }
    function show() {
      const shown = visible();
      for (const video of Object.values(videos)) video.hidden = !shown.includes(video);
      stage.classList.toggle("wipe", mode === "wipe");
      stage.classList.toggle("side", mode === "side");
      for (const video of [videos.a, videos.b]) {
        video.style.clipPath = mode === "wipe" ? `inset(0 0 0 ${wipeAt}%)` : "";
        video.style.left = mode === "side" ? "50%" : "";
        video.style.width = mode === "side" ? "50%" : "";
      }
      $("#wipe-line").style.left = `${wipeAt}%`;
      $("#no-media").hidden = shown.every((video) => video.getAttribute("src"));
      $$(".modes [data-mode]").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
      $("#flip").classList.toggle("active", flipped);
      stage.dataset.mode = mode;
      stage.dataset.flipped = flipped ? "b" : "a";
    }
    $$(".modes [data-mode]").forEach((button) => button.addEventListener("click", () => { mode = button.dataset.mode; show(); }));
    $("#flip").addEventListener("click", () => { flipped = !flipped; show(); });

    function describe() {
      const cut = frame - page.head;
      const where = cut < 0 ? "head handle" : cut >= page.frames - page.head - page.tail ? "tail handle" : `cut ${cut}`;
      readout.value = `frame ${frame} / ${page.frames - 1} · ${where} · src ${timecode(page.start_timecode, frame, rate)}` +
        ` · rec frame ${page.record_start + cut}`;
      readout.dataset.frame = frame;
      scrub.value = frame;
      drawMarks();
    }
    function seek(k) {
      frame = Math.max(0, Math.min(page.frames - 1, k));
      for (const video of Object.values(videos)) {
        if (video.getAttribute("src")) video.currentTime = (frame + 0.5) / Number(video.dataset.fps);
      }
      describe();
    }
    function pause() {
      playing = false;
      for (const video of Object.values(videos)) video.pause();
      $("#play").textContent = "▶︎";
      seek(frame);
    }
    function tick(now, meta) {
      if (!playing) return;
      const master = visible()[0];
      frame = Math.min(page.frames - 1, Math.floor(meta.mediaTime * Number(master.dataset.fps) + 0.01));
      for (const video of visible().slice(1)) {
        if (Math.abs(video.currentTime - master.currentTime) > 0.5 / rate) video.currentTime = master.currentTime;
      }
      describe();
      if (frame >= page.frames - 1) pause(); else master.requestVideoFrameCallback(tick);
    }
    function play() {
      const shown = visible().filter((video) => video.getAttribute("src"));
      if (!shown.length) return;
      playing = true;
      $("#play").textContent = "❚❚";
      if (frame >= page.frames - 1) seek(0);
      shown.forEach((video) => video.play());
      shown[0].requestVideoFrameCallback(tick);
    }
    $("#play").addEventListener("click", () => (playing ? pause() : play()));
    $("#prev").addEventListener("click", () => { pause(); seek(frame - 1); });
    $("#next").addEventListener("click", () => { pause(); seek(frame + 1); });
    scrub.addEventListener("input", () => { if (playing) pause(); seek(Number(scrub.value)); });
    document.addEventListener("keydown", (event) => {
      if (["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && event.target.type !== "range") return;
      if (event.key === "ArrowLeft") { pause(); seek(frame - 1); event.preventDefault(); }
      else if (event.key === "ArrowRight") { pause(); seek(frame + 1); event.preventDefault(); }
      else if (event.key === " ") { playing ? pause() : play(); event.preventDefault(); }
      else if (event.key === "f" || event.key === "F") { flipped = !flipped; show(); }
    });

    // the wipe follows a drag across the picture
    let dragging = false;
    const wipeTo = (event) => {
      const box = stage.getBoundingClientRect();
      wipeAt = Math.max(0, Math.min(100, (100 * (event.clientX - box.left)) / box.width));
      show();
    };

    // prompts: points and boxes in plate pixels; frames count from the first cut frame, as in a sidecar
    const marks = $("#marks");
    const prompts = {
      points: page.mask ? page.mask.points.map((p) => ({ ...p })) : [],
      boxes: page.mask ? page.mask.boxes.map((b) => ({ ...b })) : [],
    };
    if (page.width && page.height) {
      marks.setAttribute("viewBox", `0 0 ${page.width} ${page.height}`);
      marks.setAttribute("preserveAspectRatio", "xMidYMid meet");
    }
    const tool = () => $("input[name=tool]:checked").value;
    const plateXY = (event) => {
      const point = marks.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      const at = point.matrixTransform(marks.getScreenCTM().inverse());
      return [Math.round(Math.max(0, Math.min(page.width - 1, at.x))), Math.round(Math.max(0, Math.min(page.height - 1, at.y)))];
    };
    const svg = (name, attributes) => {
      const element = document.createElementNS("http://www.w3.org/2000/svg", name);
      for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
      return element;
    };
    function drawMarks() {
      marks.replaceChildren();
      const cut = frame - page.head, size = Math.max(4, (page.width || 640) / 120);
      for (const p of prompts.points.filter((p) => p.frame === cut)) {
        marks.append(svg("circle", { cx: p.x, cy: p.y, r: size, class: p.positive ? "positive" : "negative" }));
      }
      for (const b of prompts.boxes.filter((b) => b.frame === cut)) {
        const [x0, y0, x1, y1] = b.box;
        marks.append(svg("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
      }
      const list = $("#prompt-list");
      list.replaceChildren(...prompts.points.map((p) => Object.assign(document.createElement("li"),
        { textContent: `${p.positive ? "+" : "−"} point at (${p.x}, ${p.y}) on cut frame ${p.frame}` })),
        ...prompts.boxes.map((b) => Object.assign(document.createElement("li"),
        { textContent: `box [${b.box.join(", ")}] on cut frame ${b.frame}` })));
    }
    let boxStart = null;
    stage.addEventListener("pointerdown", (event) => {
      if (tool() === "none") {
        if (mode === "wipe") { dragging = true; wipeTo(event); }
        return;
      }
      if (!page.width) return;
      if (playing) pause();
      const [x, y] = plateXY(event);
      if (tool() === "box") { boxStart = [x, y]; return; }
      prompts.points.push({ frame: frame - page.head, x, y, positive: tool() === "positive" });
      drawMarks();
    });
    stage.addEventListener("pointermove", (event) => { if (dragging) wipeTo(event); });
    window.addEventListener("pointerup", (event) => {
      dragging = false;
      if (!boxStart) return;
      const [x, y] = plateXY(event);
      const [x0, y0] = boxStart;
      boxStart = null;
      if (Math.abs(x - x0) < 2 || Math.abs(y - y0) < 2) return;
      prompts.boxes.push({ frame: frame - page.head, box: [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)] });
      drawMarks();
    });
    $$("input[name=tool]").forEach((radio) => radio.addEventListener("change", () => {
      stage.classList.toggle("picking", tool() !== "none");
      if (tool() !== "none" && mode !== "plate" && mode !== "overlay") { mode = "plate"; show(); }
    }));
    $("#clear-prompts").addEventListener("click", () => { prompts.points = []; prompts.boxes = []; drawMarks(); });
    $("#apply-prompts").addEventListener("click", async () => {
      try {
        const job = await call("POST", `/api/batches/${batch}/shots/${encodeURIComponent(shot)}/prompts`,
          { points: prompts.points, boxes: prompts.boxes, remove: $("#remove").value, reviewer: reviewer() });
        follow(job, () => location.reload());
      } catch (error) {
        say(error.message, true);
      }
    });

    // decisions
    $$("[data-decide]").forEach((button) => button.addEventListener("click", async () => {
      const isMask = button.dataset.decide === "mask";
      const row = isMask ? null : button.closest(".version-row");
      const payload = {
        decision: button.dataset.decision,
        reviewer: reviewer(),
        note: isMask ? $("#mask-note").value : $(".version-note", row).value,
        rerun_from: (isMask ? $("#mask-rerun") : $(".version-rerun", row)).value || null,
      };
      const url = isMask
        ? `/api/batches/${batch}/shots/${encodeURIComponent(shot)}/mask/decision`
        : `/api/shots/${encodeURIComponent(shot)}/versions/${button.dataset.label}/decision`;
      try {
        const answer = await call("POST", url, payload);
        if (answer.job) follow(answer.job, () => location.reload()); else location.reload();
      } catch (error) {
        say(error.message, true);
      }
    }));

    show();
    seek(frame);
    window.voidflowPlayer = { seek, frame: () => frame, mode: () => mode, prompts }; // for scripted checks
  }

  if (body.dataset.page === "overview") overview();
  if (body.dataset.page === "shot") shotPage();
})();
