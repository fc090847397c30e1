// The topology page: fetch the drawing again every few seconds (same origin, the
// session's cookie); a failed fetch leaves the last drawing in place. Each drawing asks
// ARM for the rules' health (a POST: in the activity log and the write budget), so it
// is fetched only while the page is shown, and stops after half an hour.
const box = document.getElementById("topology");
if (box) {
  const every = Number(box.dataset.every || "3") * 1000;
  const until = Date.now() + 30 * 60 * 1000;
  const timer = setInterval(async () => {
    if (Date.now() > until) {
      clearInterval(timer);
      const note = document.getElementById("topology-paused");
      if (note) note.hidden = false;
      return;
    }
    if (document.visibilityState !== "visible") return;
    try {
      const reply = await fetch(box.dataset.src, { credentials: "same-origin" });
      if (reply.ok) box.innerHTML = await reply.text();
    } catch (err) {
      // keep the last drawing
    }
  }, every);
}
