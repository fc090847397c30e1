// The topology page: fetch the drawing again every few seconds (same origin, the
// session's cookie); a failed fetch leaves the last drawing in place.
const box = document.getElementById("topology");
if (box) {
  const every = Number(box.dataset.every || "3") * 1000;
  setInterval(async () => {
    try {
      const reply = await fetch(box.dataset.src, { credentials: "same-origin" });
      if (reply.ok) box.innerHTML = await reply.text();
    } catch (err) {
      // keep the last drawing
    }
  }, every);
}
