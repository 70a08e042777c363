// The chair's remote (docs/web.md). One WebSocket to /ws: the chair sends {"topic", "payload"}
// (hello, state, telemetry, event, reply); the page sends the commands of docs/mqtt.md as they are.
// The state the chair sends is the truth: the page draws it and never guesses ahead of it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const IN_SESSION = new Set(["scanning", "adjusting", "running", "paused", "settling"]);
  const STOPPABLE = new Set(["scanning", "adjusting", "running", "paused"]);
  const SETTABLE = new Set(["idle", "scanning", "adjusting", "running", "paused"]);
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;

  let ws = null;
  let hello = null;
  let state = null;
  let retryMs = RETRY_MIN_MS;
  let seq = 0;
  const pending = new Map(); // command id -> {what, command, tries}: to word or retry a refusal
  const RESET_TRIES = 20;
  const RESET_RETRY_MS = 250;
  // The chair executes one command at a time (others get "busy"): the page sends its own one
  // after another, each once the previous one is answered. An e-stop jumps the line and drops
  // whatever was still waiting (nothing queued before it may start the chair again).
  const queue = [];
  let inFlight = null;
  const prefix = Math.random().toString(36).slice(2, 8);

  // ---- the connection ------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.onopen = () => {
      retryMs = RETRY_MIN_MS;
      setLink(true);
    };
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      receive(msg.topic, msg.payload);
    };
    ws.onclose = () => {
      setLink(false);
      ws = null;
      pending.clear();
      queue.length = 0;
      inFlight = null;
      setTimeout(connect, retryMs); // the session runs on meanwhile (docs/web.md)
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    };
  }

  function setLink(up) {
    const link = $("link");
    link.dataset.up = String(up);
    link.textContent = up ? "connected" : "connection lost – reconnecting…";
    if (!up) {
      $("state").textContent = state ? `${state.state} (not connected)` : "not connected";
    }
    render();
  }

  function send(command, what, tries = 1) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      notice("Not connected to the chair.");
      return;
    }
    const id = `web-${prefix}-${++seq}`;
    pending.set(id, { what: what || command.action, command, tries });
    const text = JSON.stringify({ id, ...command });
    if (command.action === "estop") {
      queue.length = 0;
      ws.send(text);
      return;
    }
    queue.push({ id, text });
    pump();
  }

  function pump() {
    if (inFlight || !queue.length || !ws || ws.readyState !== WebSocket.OPEN) return;
    inFlight = queue.shift();
    ws.send(inFlight.text);
  }

  function receive(topic, payload) {
    switch (topic) {
      case "hello":
        hello = payload;
        fillChoices();
        break;
      case "state":
        state = payload;
        render();
        break;
      case "telemetry":
        drawTelemetry(payload);
        break;
      case "reply":
        replied(payload);
        break;
      case "event":
        if (payload.event === "session_finished") {
          notice("");
        }
        break;
    }
  }

  function replied(reply) {
    const asked = reply.id != null ? pending.get(reply.id) : undefined;
    const what = asked ? asked.what : undefined;
    if (reply.id != null) pending.delete(reply.id);
    // (a refusal before the command was read has no id: it is the one in flight)
    if (inFlight && (reply.id === inFlight.id || reply.id == null)) {
      inFlight = null;
      pump();
    }
    if (reply.state) {
      state = reply.state;
      render();
    }
    if (reply.ok) {
      notice("");
    } else if (
      // Reset is refused while the chair still comes to rest after a stop: try again shortly.
      asked && asked.command.action === "reset" && reply.error.code === "not_allowed" &&
      (now() === "estop" || now() === "fault") && asked.tries < RESET_TRIES
    ) {
      notice("Reset: waiting for the chair to come to rest…");
      setTimeout(() => send(asked.command, asked.what, asked.tries + 1), RESET_RETRY_MS);
    } else if (reply.error) {
      notice(`${what || "Command"} refused: ${reply.error.message} (${reply.error.code})`);
    }
  }

  function notice(text) {
    $("notice").textContent = text;
  }

  // ---- the controls --------------------------------------------------------------------------

  function options(select, values, label = (v) => v) {
    const keep = select.value;
    select.replaceChildren(
      ...values.map((v) => {
        const o = document.createElement("option");
        o.value = String(v);
        o.textContent = label(v);
        return o;
      }),
    );
    if (values.map(String).includes(keep)) select.value = keep;
  }

  const words = (v) => String(v).replaceAll("_", " ");

  function fillChoices() {
    $("chair-id").textContent = hello.chair_id ? `· ${hello.chair_id}` : "";
    const programs = [...hello.programs];
    if (hello.manual) programs.push(hello.manual);
    options($("program"), programs, (p) => (p === hello.manual ? "manual mode" : words(p)));
    options($("heat"), ["", ...hello.heat_levels], (v) => (v === "" ? "program's default" : v));
    options($("technique"), hello.techniques, words);
    options($("area"), hello.areas);
    options($("zone"), [...hello.zones].reverse(), words);
    options($("width"), hello.widths);
    const intensity = $("intensity");
    intensity.min = hello.intensities[0];
    intensity.max = hello.intensities[hello.intensities.length - 1];
    if (!intensity.dataset.touched) intensity.value = hello.default_intensity;
    const tempo = $("tempo");
    tempo.min = hello.tempos[0];
    tempo.max = hello.tempos[hello.tempos.length - 1];
    if (!tempo.dataset.touched) tempo.value = hello.tempos[Math.floor(hello.tempos.length / 2)];
    const minutes = $("minutes");
    minutes.min = hello.minutes.min;
    minutes.max = hello.minutes.max;
    minutes.placeholder = "program's default";
    if (!$("zone").dataset.touched) $("zone").value = "upper_back";
    if (!$("area").dataset.touched) $("area").value = "partial";
    if (!$("width").dataset.touched) $("width").value = "medium";
    const box = $("zone-strengths");
    box.replaceChildren(
      ...[...hello.zones].reverse().map((zone) => {
        const label = document.createElement("label");
        label.className = "field";
        label.textContent = words(zone);
        const input = document.createElement("input");
        input.type = "number";
        input.min = hello.zone_offsets[0];
        input.max = hello.zone_offsets[hello.zone_offsets.length - 1];
        input.step = 1;
        input.value = 0;
        input.dataset.zone = zone;
        input.setAttribute("aria-label", `Strength ${words(zone)}`);
        input.addEventListener("change", () => zoneStrengthChanged(input));
        label.append(input);
        return label;
      }),
    );
    showValues();
    render();
  }

  function showValues() {
    $("intensity-value").textContent = $("intensity").value;
    $("tempo-value").textContent = $("tempo").value;
  }

  const now = () => (state ? state.state : null);
  const inSession = () => IN_SESSION.has(now());
  const manualSession = () => inSession() && state.manual != null;

  function manualChoice() {
    return {
      technique: $("technique").value,
      area: $("area").value,
      zone: $("zone").value,
      tempo: Number($("tempo").value),
      width: $("width").value,
    };
  }

  function zoneOffsets() {
    const out = {};
    for (const input of $("zone-strengths").querySelectorAll("input")) {
      const v = Number(input.value);
      if (v !== 0) out[input.dataset.zone] = v;
    }
    return out;
  }

  function start() {
    const program = $("program").value;
    // What the user left alone is not sent: the program's own defaults apply (docs/mqtt.md).
    const command = { action: "start", program };
    if ($("minutes").value) command.minutes = Number($("minutes").value);
    if ($("intensity").dataset.touched) command.intensity = Number($("intensity").value);
    if ($("heat").value) command.heat = $("heat").value;
    const offsets = zoneOffsets();
    if (Object.keys(offsets).length) command.zone_intensity = offsets;
    if (hello && program === hello.manual) command.manual = manualChoice();
    send(command, "Start");
  }

  // A setting changed during a session is sent at once; between sessions the next Start takes it.
  function settingChanged(field, value) {
    if (inSession() && SETTABLE.has(now())) send({ action: "set", [field]: value }, "Change");
  }

  function manualChanged(field, value) {
    if (manualSession() && SETTABLE.has(now())) {
      send({ action: "set", manual: { [field]: value } }, "Change");
    }
  }

  function zoneStrengthChanged(input) {
    if (inSession() && SETTABLE.has(now())) {
      send({ action: "set", zone_intensity: { [input.dataset.zone]: Number(input.value) } }, "Change");
    }
  }

  function wire() {
    $("start").addEventListener("click", start);
    $("pause").addEventListener("click", () => send({ action: "pause" }, "Pause"));
    $("resume").addEventListener("click", () => send({ action: "resume" }, "Resume"));
    $("stop").addEventListener("click", () => send({ action: "stop" }, "Stop"));
    $("reset").addEventListener("click", () => send({ action: "reset" }, "Reset"));
    $("estop").addEventListener("click", () => send({ action: "estop" }, "Emergency stop"));
    const step = () => (hello ? hello.move_step_mm : 25);
    $("up").addEventListener("click", () => send({ action: "move", mm: step() }, "Up"));
    $("down").addEventListener("click", () => send({ action: "move", mm: -step() }, "Down"));
    $("intensity").addEventListener("input", showValues);
    $("intensity").addEventListener("change", (e) => {
      e.target.dataset.touched = "1";
      settingChanged("intensity", Number(e.target.value));
    });
    $("heat").addEventListener("change", (e) => {
      if (e.target.value) settingChanged("heat", e.target.value);
    });
    $("tempo").addEventListener("input", showValues);
    $("tempo").addEventListener("change", (e) => {
      e.target.dataset.touched = "1";
      manualChanged("tempo", Number(e.target.value));
    });
    for (const field of ["technique", "area", "zone", "width"]) {
      $(field).addEventListener("change", (e) => {
        e.target.dataset.touched = "1";
        manualChanged(field, e.target.value);
      });
    }
    $("program").addEventListener("change", render);
  }

  // ---- drawing the state ---------------------------------------------------------------------

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function render() {
    const up = ws && ws.readyState === WebSocket.OPEN;
    const st = now();
    const el = $("state");
    if (state && up) {
      const parts = [state.state];
      if (state.program) parts.push(words(state.program));
      if (state.technique) parts.push(words(state.technique));
      el.textContent = parts.join(" · ");
      el.dataset.state = state.state;
    }
    const enable = (id, on) => {
      $(id).disabled = !(up && on);
    };
    enable("start", st === "idle");
    enable("pause", st === "running");
    enable("resume", st === "paused");
    enable("stop", STOPPABLE.has(st));
    enable("reset", st === "fault" || st === "estop");
    enable("up", manualSession());
    enable("down", manualSession());
    $("estop").disabled = false; // always: a click while disconnected says so
    // Manual mode's controls while it is chosen or runs.
    const manualChosen = hello && $("program").value === hello.manual;
    $("manual").hidden = !(manualChosen || manualSession());
    if (!state) return;

    const fault = $("fault");
    if (state.fault) {
      fault.hidden = false;
      fault.textContent = `${state.fault.message} (${state.fault.code})`;
    } else {
      fault.hidden = true;
      fault.textContent = "";
    }

    const elapsed = state.elapsed_s || 0;
    const total = elapsed + (state.remaining_s || 0);
    const time = $("time");
    time.setAttribute("aria-valuemax", String(Math.round(total)));
    time.setAttribute("aria-valuenow", String(Math.round(elapsed)));
    time.setAttribute(
      "aria-valuetext",
      total > 0 ? `${clock(elapsed)} of ${clock(total)}` : "no session",
    );
    time.querySelector(".fill").style.width = total > 0 ? `${(100 * elapsed) / total}%` : "0";
    $("time-text").textContent = total > 0 ? `${clock(state.remaining_s)} left` : "–";

    $("now-program").textContent = state.program ? words(state.program) : "–";
    $("now-technique").textContent = state.technique ? words(state.technique) : "–";

    if (state.heat) drawPad(state.heat.temp_c, state.heat.target_c, state.heat.level);
    if (inSession()) {
      if (state.intensity != null && !$("intensity").matches(":active")) {
        $("intensity").value = state.intensity;
      }
      if (state.heat && state.heat.level) $("heat").value = state.heat.level;
    }
    if (state.manual) {
      for (const field of ["technique", "area", "zone", "width"]) {
        if (state.manual[field] != null && document.activeElement !== $(field)) {
          $(field).value = state.manual[field];
        }
      }
      if (state.manual.tempo != null && !$("tempo").matches(":active")) {
        $("tempo").value = state.manual.tempo;
      }
    }
    showValues();
    drawZones();
  }

  function drawPad(tempC, targetC, level) {
    const pad = $("pad");
    if (tempC == null) {
      $("pad-text").textContent = "–";
      return;
    }
    pad.setAttribute("aria-valuenow", String(tempC));
    const target = level && level !== "off" && targetC ? ` → ${targetC.toFixed(0)} °C (${level})` : " (heat off)";
    pad.setAttribute("aria-valuetext", `${tempC.toFixed(1)} °C${target}`);
    $("pad-text").textContent = `${tempC.toFixed(1)} °C${target}`;
  }

  function track() {
    return hello ? hello.track_mm : [0, 1200];
  }

  function heightOf(mm) {
    const [lo, hi] = track();
    return (100 * (mm - lo)) / (hi - lo);
  }

  let drawnZones = "";
  let rollerZone = null; // where the roller is, from the telemetry
  function drawZones() {
    const zones = (state && state.zones) || {};
    const key = JSON.stringify(zones);
    if (key !== drawnZones) {
      drawnZones = key;
      $("zones").replaceChildren(
        ...Object.entries(zones).map(([name, [lo, hi]]) => {
          const z = document.createElement("div");
          z.className = "zone";
          z.dataset.zone = name;
          z.style.bottom = `${heightOf(lo)}%`;
          z.style.height = `${heightOf(hi) - heightOf(lo)}%`;
          z.textContent = words(name);
          return z;
        }),
      );
    }
    const here = inSession() ? rollerZone || state.zone : null;
    for (const z of $("zones").children) z.dataset.active = String(z.dataset.zone === here);
    $("now-zone").textContent = here ? words(here) : "–";
  }

  function drawTelemetry(t) {
    if (typeof t.y_mm === "number") {
      const roller = $("roller");
      const [lo, hi] = track();
      roller.setAttribute("aria-valuemin", String(lo));
      roller.setAttribute("aria-valuemax", String(hi));
      roller.setAttribute("aria-valuenow", t.y_mm.toFixed(1));
      roller.setAttribute("aria-valuetext", `${t.y_mm.toFixed(0)} mm${t.zone ? `, ${words(t.zone)}` : ""}`);
      roller.style.bottom = `${Math.min(100, Math.max(0, heightOf(t.y_mm)))}%`;
      $("now-roller").textContent = `${t.y_mm.toFixed(0)} mm`;
      if (t.zone !== rollerZone) {
        rollerZone = t.zone || null;
        drawZones();
      }
    }
    if (typeof t.heat_c === "number" && state && state.heat) {
      drawPad(t.heat_c, t.heat_target_c || state.heat.target_c, state.heat.level);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    render();
    connect();
  });
})();
