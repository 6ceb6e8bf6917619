// The voicegw agent desk: sign-in, presence, incoming transfers, the WebRTC leg.
// Plain script, no build step, nothing fetched from elsewhere (the CSP forbids it).
"use strict";

const $ = (id) => document.getElementById(id);
const desk = {
  ws: null, pc: null, offer: null, stream: null, muted: false, held: false,
  analyser: null, audioContext: null,
};
window.voicegwDesk = desk; // read by the browser tests (the analyser, the state)

function show(id, on) { $(id).hidden = !on; }

async function whoAmI() {
  const r = await fetch("/desk/me", { credentials: "same-origin" });
  if (r.ok) { const me = await r.json(); signedIn(me.agent); } else { show("sign-in", true); }
}

$("sign-in").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("sign-in-error").textContent = "";
  const r = await fetch("/desk/sign-in", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ agent: $("agent").value, password: $("password").value }),
  });
  $("password").value = "";
  if (r.ok) { signedIn((await r.json()).agent); return; }
  $("sign-in-error").textContent = r.status === 429 ? "Too many attempts: wait a minute." : "Wrong agent or password.";
});

$("sign-out").addEventListener("click", async () => {
  await fetch("/desk/sign-out", { method: "POST", credentials: "same-origin" });
  if (desk.ws) desk.ws.close();
  location.reload();
});

function signedIn(agent) {
  show("sign-in", false); show("who", true); show("desk", true);
  $("agent-name").textContent = agent;
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/desk/ws`);
  desk.ws = ws;
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = () => { $("status").textContent = "Disconnected from the desk."; desk.connected = false; };
  ws.onopen = () => { desk.connected = true; };
}

function send(message) { if (desk.ws && desk.ws.readyState === 1) desk.ws.send(JSON.stringify(message)); }

$("presence").addEventListener("change", () => send({ type: "presence", status: $("presence").value }));

function setPresence(status) {
  const badge = $("presence-shown");
  badge.textContent = status; badge.className = `badge ${status}`;
  desk.presence = status;
  if (status !== "busy") $("presence").value = status;
}

function text(id, value) { $(id).textContent = value || "—"; }

function showContext(ctx) {
  text("ctx-caller", ctx.caller); text("ctx-called", ctx.called);
  text("ctx-channel", ctx.channel); text("ctx-flow", ctx.flow);
  text("ctx-uui", ctx.bot_session);
  const x = Object.keys(ctx).filter((k) => k.startsWith("ivr.")).map((k) => `${k.slice(4)}=${ctx[k]}`);
  text("ctx-x", x.join("; "));
  text("ctx-summary", ctx.summary);
  const cell = $("ctx-transcript");
  cell.textContent = "";
  if (ctx.transcript_url) {
    const a = document.createElement("a");
    a.href = ctx.transcript_url; a.textContent = "open transcript"; a.target = "_blank"; a.rel = "noopener";
    cell.appendChild(a);
  } else { cell.textContent = "—"; }
}

function handle(m) {
  switch (m.type) {
    case "hello": setPresence(m.presence); break;
    case "presence": setPresence(m.status); break;
    case "incoming":
      desk.offer = m.offer; desk.warm = m.context.warm === "1"; showContext(m.context);
      $("incoming-title").textContent = desk.warm ? "Incoming warm transfer" : "Incoming transfer";
      show("incoming", true); ringing(true);
      $("status").textContent = `Ringing: ${m.context.caller || "a caller"} (${m.timeout} s to answer).`;
      break;
    case "answer":
      if (desk.pc) desk.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      $("status").textContent = "On a call.";
      break;
    case "withdrawn": case "ended":
      hangUpLocal(); $("status").textContent = `Call over: ${m.reason}.`;
      break;
    case "error": console.warn("desk:", m.message); break;
  }
}

function ringing(on) {
  document.querySelector(".buttons.ringing").hidden = !on;
  document.querySelector(".buttons.talking").hidden = on;
  document.querySelector(".buttons.warm").hidden = on || !desk.warm;
}

// A warm transfer's controls: the agent's accept/decline after the briefing, and
// complete/cancel (the same as the operator's POST /calls/{id}/transfer/complete|cancel).
for (const action of ["accept", "decline", "complete", "cancel"]) {
  $(`warm-${action}`).addEventListener("click", () => {
    send({ type: "warm", offer: desk.offer, action });
    desk.warm = false;
    document.querySelector(".buttons.warm").hidden = true;
  });
}

$("accept").addEventListener("click", accept);
$("decline").addEventListener("click", () => { send({ type: "decline", offer: desk.offer }); hangUpLocal(); });
$("hangup").addEventListener("click", () => { send({ type: "hangup", offer: desk.offer }); hangUpLocal(); });
$("mute").addEventListener("click", () => {
  desk.muted = !desk.muted; $("mute").setAttribute("aria-pressed", String(desk.muted));
  if (desk.stream) desk.stream.getAudioTracks().forEach((t) => { t.enabled = !desk.muted; });
  send({ type: "mute", offer: desk.offer, on: desk.muted });
});
$("hold").addEventListener("click", () => {
  desk.held = !desk.held; $("hold").setAttribute("aria-pressed", String(desk.held));
  send({ type: "hold", offer: desk.offer, on: desk.held });
});

async function accept() {
  ringing(false);
  $("incoming-title").textContent = "On a call";
  desk.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection({ iceServers: [] });
  desk.pc = pc;
  desk.stream.getTracks().forEach((t) => pc.addTrack(t, desk.stream));
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    $("remote").srcObject = stream; // Chrome plays remote WebRTC audio into WebAudio only when attached
    listen(stream);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  send({ type: "accept", offer: desk.offer, sdp: pc.localDescription.sdp });
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // no trickle: send what we have after 3 s
  });
}

function listen(stream) {
  desk.audioContext = desk.audioContext || new AudioContext();
  const source = desk.audioContext.createMediaStreamSource(stream);
  const analyser = desk.audioContext.createAnalyser();
  analyser.fftSize = 4096;
  source.connect(analyser);
  desk.analyser = analyser;
}

// The level (dB) of the caller's audio at `freq` Hz, and the loudest frequency: for the tests.
desk.spectrum = (freq) => {
  const a = desk.analyser;
  if (!a) return null;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  const hz = desk.audioContext.sampleRate / a.fftSize;
  let peak = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  return { level: bins[Math.round(freq / hz)], peak: peak * hz, peakLevel: bins[peak] };
};

function hangUpLocal() {
  if (desk.pc) { desk.pc.close(); desk.pc = null; }
  if (desk.stream) { desk.stream.getTracks().forEach((t) => t.stop()); desk.stream = null; }
  desk.analyser = null; desk.offer = null; desk.muted = desk.held = false;
  $("mute").setAttribute("aria-pressed", "false"); $("hold").setAttribute("aria-pressed", "false");
  show("incoming", false);
}

whoAmI();
